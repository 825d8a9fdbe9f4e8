"""Findings of a hostile-server and daily-user review of the client, each pinned by a test.

Pure: the chat state, handlers, windows and chat logs, without sockets or a terminal.
"""

from test_client_model import feed, registered

from curses_client.entries import Kind
from curses_client.handle import handle
from curses_client.irc import parse_message


def test_braces_in_a_numeric_are_text_not_a_format_string():
    # str.format on the server's words: "{x}" raised KeyError, "{" ValueError, in the UI loop
    state = registered()
    entries, _ = feed(state, ":srv 301 alice bob :{x} {", ":srv 311 alice {0} u h :{-1} {2+}",
                      ":srv 324 alice #chat +k {0.__class__}")
    assert [entry.text for entry in entries] == [
        "bob is away: {x} {", "{0} is u@h ({-1} {2+})", "Modes of #chat: +k {0.__class__}"]
    assert all(entry.kind is Kind.INFO for entry in entries)


def test_a_status_message_reaches_its_room_when_a_prefix_symbol_is_also_a_channel_type():
    # PREFIX=(qaohv)~&@%+ with CHANTYPES=#&: "@&ops" lost both marks and went to a query window
    state = registered()
    feed(state, ":srv 005 alice PREFIX=(qaohv)~&@%+ CHANTYPES=#& :are supported",
         ":alice!u@h JOIN &ops")
    ops = state.window_of("&ops")
    for line in (":bob!u@h PRIVMSG @&ops :to the ops", ":bob!u@h PRIVMSG &ops :to all",
                 ":bob!u@h NOTICE ~&ops :to the owners"):
        assert [window for window, _ in handle(state, parse_message(line)).shown] == [ops]
    assert state.window_of("bob") is None


def test_chat_log_names_are_never_a_device_name_on_windows():
    # a private message from "nul" or "COM1" made DIR/nul/<day>.log: on Windows a device, the
    # write failed and every chat log stopped, at any user's wish
    from curses_client.chatlog import safe_file_name

    for nick in ("nul", "CON", "com1", "Lpt9", "aux.txt", "prn."):
        stem = safe_file_name(nick).split(".")[0]
        assert stem not in {"con", "prn", "aux", "nul", "com1", "lpt9"}, nick
    assert safe_file_name("nullable") == "nullable" and safe_file_name("#con") == "#con"


def test_a_join_replay_that_ends_while_older_lines_are_fetched_stays_in_its_own_room():
    # /join #b, then PgUp in #chat at once: the replay of #b ended first and went into
    # #chat's scrollback as #chat's older page; #chat's real page then showed as a replay
    from test_client_model import history_state

    state = history_state()
    chat = state.window_of("#chat")
    feed(state, ":alice!u@h JOIN #b")
    b = state.window_of("#b")
    state.windows.show(chat)
    assert state.fetch_older().send[0].startswith("CHATHISTORY BEFORE #chat ")
    reaction = None
    for line in (":srv BATCH +r1 chathistory #b", "@batch=r1;msgid=b1 :bob!u@h PRIVMSG #b :in b",
                 ":srv BATCH -r1"):
        reaction = handle(state, parse_message(line))
    assert reaction.older is None
    window, entry = reaction.shown[0]
    assert (window, entry.text) == (b, "in b")
    for line in (":srv BATCH +r2 chathistory #chat", "@batch=r2;msgid=c1 :bob!u@h PRIVMSG #chat :older in chat",
                 ":srv BATCH -r2"):
        reaction = handle(state, parse_message(line))
    assert reaction.older is not None and reaction.older[0] is chat
    assert [entry.text for entry in reaction.older[1]] == ["older in chat"] and reaction.shown == []


def test_a_refused_join_is_said_where_the_user_is_looking():
    # /join #secret from #chat opens #secret's window (shown once the JOIN comes); a 475 went
    # into that hidden window, so the user saw nothing happen
    from curses_client import commands

    state = registered()
    chat = state.window_of("#chat")
    assert commands.run(state, "/join #secret").send == ["JOIN :#secret"]
    assert state.current is chat
    reaction = handle(state, parse_message(":srv 475 alice #secret :Cannot join channel (+k)"))
    assert [(window or state.current, entry.kind) for window, entry in reaction.shown] == [(chat, Kind.ERROR)]
    assert "KEY" in reaction.shown[0][1].text
    # about a room we are in, a numeric still goes to its window
    reaction = handle(state, parse_message(":srv 482 alice #chat :You're not channel operator"))
    assert [window for window, _ in reaction.shown] == [chat]


def test_our_own_lines_are_shown_sanitised_like_everyone_elses():
    # what we type or paste went into the pane as it was: a pasted U+202E turned the rest of
    # our own line around on the screen, while others saw it named
    from curses_client import commands

    state = registered()
    for line, sent in (("look \u202eevil", "PRIVMSG #chat :look \u202eevil"),
                       ("/me waves\u200b", "PRIVMSG #chat :\x01ACTION waves\u200b\x01"),
                       ("/msg bob hi\u2066", "PRIVMSG bob :hi\u2066")):
        reaction = commands.run(state, line)
        assert reaction.send == [sent]  # what is said is what was typed
        assert "<U+" in reaction.entries[0].text, line


def test_the_case_mapping_is_taken_once_per_connection():
    # each change refolds every window's members (0.3 s with 100 full rooms): a server that
    # flips CASEMAPPING in 005 after 005 could stall the UI loop for minutes
    state = registered()
    calls = []
    state.windows.refold = lambda fold: calls.append(fold)
    feed(state, ":srv 005 alice CASEMAPPING=ascii :are supported")
    feed(state, *[f":srv 005 alice CASEMAPPING={mapping} :are supported" for mapping in ("rfc1459", "ascii") * 50])
    assert state.rules.casemapping == "ascii" and len(calls) == 1
    state.disconnected("gone")
    state.connected()  # a new connection: the server (maybe another one) says again
    feed(state, ":srv 005 alice CASEMAPPING=ascii :are supported")
    assert state.rules.casemapping == "ascii"


def test_a_server_time_outside_what_every_platform_can_show_is_ignored():
    # time.localtime (drawing a line's time, naming its log file) raises OSError on Windows
    # before 1970 and after 3000: a line tagged @time=0001-01-01T00:00:00Z ended the client there
    from curses_client.model import parse_server_time

    assert parse_server_time("0001-01-01T00:00:00Z") is None
    assert parse_server_time("1969-12-31T23:59:59Z") is None
    assert parse_server_time("9999-12-31T23:59:59Z") is None
    assert parse_server_time("1970-01-02T00:00:00Z") == 86_400
    assert parse_server_time("2999-12-30T23:59:59.000Z") is not None
    state = registered()
    entries, _ = feed(state, "@time=0001-01-01T00:00:00.000Z :bob!u@h PRIVMSG #chat :from long ago")
    assert entries[0].when > 1_000_000_000  # the time it arrived


def test_names_of_a_room_we_are_not_in_shows_the_servers_answer():
    # kicked from #chat, /names there: the server's list was dropped and "0 in #chat:" shown
    from curses_client import commands

    state = registered()
    feed(state, ":bob!u@h KICK #chat alice :out")
    assert commands.run(state, "/names").send == ["NAMES :#chat"]
    entries, _ = feed(state, ":srv 353 alice = #chat :@bob carol", ":srv 366 alice #chat :End")
    assert [entry.text for entry in entries] == ["2 in #chat: @bob, carol"]
    assert state.window_of("#chat").members == {}  # still not in it


def test_different_windows_never_share_a_chat_log():
    # "bob|away" and "bob_away" (or "[bob]" and "{bob}" under CASEMAPPING=ascii) are different
    # people: both became DIR/bob_away/, one private conversation written into the other's log
    from curses_client.chatlog import safe_file_name

    names = ["bob|away", "bob_away", "bob^away", "[bob]", "{bob}", "_bob_", "nul", "_nul", "..", "_.",
             "a" * 120 + "x", "a" * 120 + "y", "José", "Jos_", "127.0.0.1:5555", "127.0.0.1_5555"]
    files = [safe_file_name(name) for name in names]
    assert len(set(files)) == len(names), files
    assert safe_file_name("#chat") == "#chat" and safe_file_name("Bob") == safe_file_name("bob") == "bob"
    for file in files:
        assert "/" not in file and "\\" not in file and not file.startswith(".") and len(file) <= 120
