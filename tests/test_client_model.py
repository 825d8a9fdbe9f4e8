"""The chat state (curses_client.model, .handle, .commands): IRC messages and commands in,
entries and lines out."""

from ircchat.protocol import parse_message
from curses_client import commands
from curses_client.entries import Kind
from curses_client.handle import handle
from curses_client.model import AUTOJOIN_TOKEN, ChatState, Phase, split_text


def registered(nick="alice", auto_join=True):
    state = ChatState("host:1", "#chat", nick)
    sent = state.connected().send
    assert sent == ["CAP LS 302", "NICK :alice", "USER alice 0 * :alice"]
    feed(state, f":srv 001 {nick} :Welcome {nick}")
    if auto_join:
        feed(state, f":{nick}!u@h JOIN #chat", f":srv 353 {nick} = #chat :{nick} @bob carol",
             f":srv 366 {nick} #chat :End")
    return state


def members(state, room="#chat"):
    return sorted(nick for _, nick in state.window_of(room).members.values())


def feed(state, *lines):
    entries, sent = [], []
    for line in lines:
        reaction = handle(state, parse_message(line))
        entries += reaction.entries
        sent += reaction.send
    return entries, sent


def test_registration_and_auto_join_by_our_server():
    state = registered()
    assert state.phase is Phase.ONLINE and state.window_of("#chat").joined
    assert members(state) == ["alice", "bob", "carol"]
    assert state.online_count == 3
    _, sent = feed(state, f":srv PONG srv :{AUTOJOIN_TOKEN}")
    assert sent == []  # already in the room: no JOIN


def test_joins_the_room_itself_when_the_server_does_not():
    state = registered(auto_join=False)
    _, sent = feed(state, f":srv PONG srv :{AUTOJOIN_TOKEN}")
    assert sent == ["JOIN :#chat"]


def test_welcome_sends_the_autojoin_probe():
    state = ChatState("h", "#chat", "alice")
    state.connected()
    _, sent = feed(state, ":srv 001 alice :hi")
    assert sent == [f"PING :{AUTOJOIN_TOKEN}"]


def test_ping_is_answered():
    state = registered()
    assert feed(state, "PING :abc")[1] == ["PONG :abc"]


def test_nick_in_use_before_registration_brings_the_prompt_back():
    state = ChatState("h", "#chat")
    state.connected()
    assert state.needs_nick
    reaction = state.choose_nick("bad name!")
    assert state.needs_nick and reaction.send == [] and reaction.entries[0].kind is Kind.ERROR
    assert state.choose_nick("alice").send == ["NICK :alice", "USER alice 0 * :alice"]
    entries, _ = feed(state, ":srv 433 * alice :Nickname is already in use")
    assert state.needs_nick and "already in use" in state.nick_problem
    assert state.choose_nick("alice2").send == ["NICK :alice2"]  # USER went already


def test_nick_in_use_after_registration_is_just_an_error():
    state = registered()
    entries, _ = feed(state, ":srv 433 alice bob :Nickname is already in use")
    assert not state.needs_nick and entries[0].kind is Kind.ERROR


def test_chat_action_private_notice_join_part_quit_nick():
    state = registered()
    entries, _ = feed(
        state,
        ":bob!u@h PRIVMSG #chat :hello",
        ":bob!u@h PRIVMSG #chat :\x01ACTION waves\x01",
        ":bob!u@h PRIVMSG alice :psst",
        ":bob!u@h NOTICE alice :note",
        ":dave!u@h JOIN #chat",
        ":dave!u@h PART #chat :bye",
        ":carol!u@h QUIT :Quit: gone",
        ":bob!u@h NICK :robert",
        ":alice!u@h NICK :alicia",
    )
    kinds = [entry.kind for entry in entries]
    # each nick change is said in every window it concerns: the room, and bob's conversation /
    # alice's server window
    assert kinds == [Kind.CHAT, Kind.ACTION, Kind.PRIVATE_IN, Kind.NOTICE, Kind.JOIN, Kind.PART, Kind.QUIT,
                     Kind.NICK, Kind.NICK, Kind.NICK, Kind.NICK]
    assert [window.name for window in state.windows.windows] == ["host:1", "#chat", "robert"]
    assert entries[1].text == "waves"
    assert "Quit: gone" in entries[6].text
    assert members(state) == ["alicia", "robert"]
    assert state.nick == "alicia"


def test_network_text_is_sanitised():
    state = registered()
    entries, _ = feed(state, ":bob!u@h PRIVMSG #chat :\x1b]0;title\x07hi \x1b[31mred\x1b[0m \x02b\x02")
    assert entries[0].text == "hi red b"


def test_unknown_numerics_show_their_text_and_errors_look_like_errors():
    state = registered()
    entries, _ = feed(state, ":srv 999 alice some :thing odd", ":srv 482 alice #chat :not allowed",
                      ":srv 438 alice rob2 :Nick change too fast")
    assert entries[0].kind is Kind.INFO and entries[0].text == "some: thing odd"
    assert entries[1].kind is Kind.ERROR and entries[1].text == "You are not a room operator in #chat."
    assert entries[2].kind is Kind.ERROR and entries[2].text == "rob2: Nick change too fast"
    assert not any(entry.text[:3].isdigit() for entry in entries)  # never a raw numeric


def test_error_from_server():
    entries, _ = feed(registered(), "ERROR :Closing Link: bye")
    assert entries[0].kind is Kind.ERROR and "Closing Link" in entries[0].text


def test_user_commands_become_irc_lines():
    state = registered()
    say = commands.run(state, "hi all")
    assert say.send == ["PRIVMSG #chat :hi all"] and say.entries[0].kind is Kind.OWN
    assert commands.run(state, "/me waves").send == ["PRIVMSG #chat :\x01ACTION waves\x01"]
    private = commands.run(state, "/msg bob psst")
    assert private.send == ["PRIVMSG bob :psst"] and private.entries[0].kind is Kind.PRIVATE_OUT
    assert commands.run(state, "/nick alicia").send == ["NICK :alicia"]
    assert commands.run(state, "/users").send == ["NAMES :#chat"]
    entries, _ = feed(state, ":srv 353 alice = #chat :alice @bob", ":srv 366 alice #chat :End")
    assert entries[0].text == "2 in #chat: alice, @bob"
    assert commands.run(state, "/dance").entries[0].kind is Kind.ERROR
    assert len(commands.run(state, "/help").entries) == len(set(commands.COMMANDS.values())) + len(commands.KEYS_HELP)


def test_typed_control_characters_never_reach_the_wire():
    state = registered()
    assert commands.run(state, "a\x00b\rc\x1b").send == ["PRIVMSG #chat :abc"]


def test_long_messages_are_split_under_the_line_limit():
    state = registered()
    sent = commands.run(state, "word " * 300).send
    assert len(sent) > 1 and all(len(line.encode()) <= 420 for line in sent)


def test_split_text_respects_utf8_boundaries():
    pieces = split_text("é" * 500, 101)
    assert all(len(piece.encode()) <= 101 for piece in pieces) and "".join(pieces) == "é" * 500


def test_nothing_is_sent_before_registration():
    state = ChatState("h", "#chat", "alice")
    reaction = commands.run(state, "too early")
    assert reaction.send == [] and reaction.entries[0].kind is Kind.ERROR


def test_disconnect_forgets_the_room_and_reconnect_registers_again():
    state = registered()
    entries = state.disconnected("reset").entries
    assert entries[0].kind is Kind.ERROR and state.phase is Phase.WAITING and state.online_count is None
    assert state.connected().send == ["CAP LS 302", "NICK :alice", "USER alice 0 * :alice"]


# -- password and transport ------------------------------------------------------------------


def test_password_goes_first_on_every_connection():
    state = ChatState("h", "#chat", "alice", password="pw")
    assert state.connected().send == ["CAP LS 302", "PASS :pw", "NICK :alice", "USER alice 0 * :alice"]
    state.disconnected("gone")
    assert state.connected().send[1] == "PASS :pw"


def test_password_goes_before_a_name_chosen_later():
    state = ChatState("h", "#chat", password="pw")
    assert state.connected().send == ["CAP LS 302", "PASS :pw"]
    assert state.choose_nick("alice").send == ["NICK :alice", "USER alice 0 * :alice"]


def test_464_asks_for_the_password_and_registration_waits_for_it():
    state = ChatState("h", "#chat", "alice", password="wrong")
    state.connected()
    entries, _ = feed(state, ":srv 464 alice :Password incorrect")
    assert state.needs_password and state.password is None
    assert entries[0].kind is Kind.ERROR
    assert entries[0].text.startswith("The server refused the password (Password incorrect).")
    state.disconnected("closed")
    assert state.connected().send == []  # nothing goes out while the user types
    assert state.choose_password("").entries[0].kind is Kind.ERROR and state.needs_password
    state.choose_password("right\x07")
    assert not state.needs_password
    state.disconnected("reconnecting")
    assert state.connected().send == ["CAP LS 302", "PASS :right", "NICK :alice", "USER alice 0 * :alice"]


def test_464_without_a_password_says_one_is_needed():
    state = ChatState("h", "#chat", "alice")
    state.connected()
    entries, _ = feed(state, ":srv 464 alice :Password incorrect")
    assert entries[0].text.startswith("The server needs a password")


def test_464_after_registration_is_only_an_error():
    state = registered()
    entries, _ = feed(state, ":srv 464 alice :nope")
    assert not state.needs_password and entries[0].text == "Password incorrect: nope"


def test_unverified_tls_is_a_warning_on_every_connection():
    from curses_client.model import Transport

    state = ChatState("h:6697", "#chat", "alice", transport=Transport.TLS_UNVERIFIED)
    entry = state.connected().entries[0]
    assert entry.kind is Kind.ERROR and "WITHOUT checking its certificate" in entry.text
    assert ChatState("h:6697", "#chat", transport=Transport.TLS).connected().entries[0].text == "Connected to h:6697 over TLS."


def test_a_refused_certificate_on_reconnection_is_shown_once_per_reason():
    state = registered()
    state.disconnected("gone")
    windows = len(state.windows.windows)  # the server's and #chat: said once in each
    assert len(state.refused("its TLS certificate could not be verified (x)").entries) == windows == 2
    assert state.refused("its TLS certificate could not be verified (x)").entries == []
    assert len(state.refused("its TLS certificate could not be verified (y)").entries) == windows


# -- IRCv3 and history -------------------------------------------------------------------------


def test_capabilities_are_asked_for_when_offered_and_registration_goes_on():
    state = ChatState("host:1", "#chat", "alice")
    state.connected()
    _, sent = feed(state, ":srv CAP * LS * :multi-prefix batch", ":srv CAP * LS :server-time sasl")
    assert sent == ["CAP REQ :batch server-time"]
    _, sent = feed(state, ":srv CAP alice ACK :batch server-time")
    assert sent == ["CAP END"] and state.caps == {"batch", "server-time"}
    other = ChatState("host:1", "#chat", "alice")
    other.connected()
    assert feed(other, ":srv CAP * LS :multi-prefix")[1] == ["CAP END"]
    assert feed(other, ":srv 421 alice CAP :Unknown command") == ([], [])  # no IRCv3: nothing to say


def history_state():
    state = registered()
    state.caps = frozenset({"batch", "server-time", "message-tags"})
    feed(state, ":srv 005 alice CHATHISTORY=100 MSGREFTYPES=msgid,timestamp :are supported")
    return state


def test_a_replay_batch_is_shown_dimmed_at_its_own_time_then_a_separator():
    state = history_state()
    entries, _ = feed(
        state, ":srv BATCH +r1 chathistory #chat",
        "@batch=r1;time=2023-11-14T22:13:20.000Z;msgid=m1 :bob!u@h PRIVMSG #chat :old news",
        "@batch=r1;time=2023-11-14T22:13:21.000Z;msgid=m2 :bob!u@h PRIVMSG #chat :\x01ACTION waves\x01",
        ":srv BATCH -r1", "@time=2023-11-14T22:14:00.000Z;msgid=m3 :bob!u@h PRIVMSG #chat :live")
    assert [(entry.text, entry.replayed, entry.when) for entry in entries[:2]] == [
        ("old news", True, 1700000000.0), ("waves", True, 1700000001.0)]
    assert entries[2].text == "─── live chat from here ───"
    assert (entries[3].text, entries[3].replayed, entries[3].when) == ("live", False, 1700000040.0)
    # The same lines replayed again (after a reconnection) are not shown twice.
    again, _ = feed(state, ":srv BATCH +r2 chathistory #chat",
                    "@batch=r2;msgid=m1 :bob!u@h PRIVMSG #chat :old news", ":srv BATCH -r2")
    assert again == []


def test_scrolling_past_the_oldest_asks_for_the_page_before_it_until_the_start():
    state = history_state()
    feed(state, ":srv BATCH +r1 chathistory #chat", "@batch=r1;msgid=m5 :bob!u@h PRIVMSG #chat :five",
         ":srv BATCH -r1")
    reaction = state.fetch_older()
    assert reaction.loading and reaction.send == ["CHATHISTORY BEFORE #chat msgid=m5 :50"]
    assert state.fetch_older().send == []  # one request at a time
    reaction = handle(state, parse_message(":srv BATCH +r2 chathistory #chat"))
    for line in ("@batch=r2;msgid=m3 :bob!u@h PRIVMSG #chat :three",
                 "@batch=r2;msgid=m4 :bob!u@h PRIVMSG #chat :four", ":srv BATCH -r2"):
        reaction = handle(state, parse_message(line))
    assert [entry.text for entry in reaction.older[1]] == ["three", "four"] and reaction.entries == []
    assert state.fetch_older().send == ["CHATHISTORY BEFORE #chat msgid=m3 :50"]
    handle(state, parse_message(":srv BATCH +r3 chathistory #chat"))
    reaction = handle(state, parse_message(":srv BATCH -r3"))
    assert reaction.older[1][0].text == "This is the start of #chat's history."
    assert state.fetch_older().send == []  # nothing older: never asked again


def test_no_history_on_the_server_means_no_request():
    state = registered()  # no CHATHISTORY in 005, no caps
    assert state.fetch_older().send == [] and not state.fetch_older().loading
