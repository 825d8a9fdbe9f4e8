"""Typed lines and slash commands (curses_client.commands): the table, pure and fast."""

import pytest

from ircchat.protocol import parse_message
from curses_client import commands
from curses_client.entries import Kind
from curses_client.handle import handle
from curses_client.model import ChatState


def online(nick="alice"):
    state = ChatState("host:1", "#chat", nick)
    state.connected()
    for line in (f":srv 001 {nick} :hi", f":{nick}!u@h JOIN #chat", f":srv 353 {nick} = #chat :{nick} bob",
                 f":srv 366 {nick} #chat :End"):
        handle(state, parse_message(line))
    return state


@pytest.mark.parametrize(("line", "sent"), [
    ("hello", ["PRIVMSG #chat :hello"]),
    ("//etc is a dir", ["PRIVMSG #chat :/etc is a dir"]),
    ("/me waves", ["PRIVMSG #chat :\x01ACTION waves\x01"]),
    ("/msg bob hi there", ["PRIVMSG bob :hi there"]),
    ("/nick alice_2", ["NICK :alice_2"]),
    ("/nick n-alice", ["NICK :n-alice"]),  # not our server's rule: the server decides
    ("/users", ["NAMES :#chat"]),
    ("/names", ["NAMES :#chat"]),
    ("/join #other", ["JOIN :#other"]),
    ("/join #locked sesame", ["JOIN #locked :sesame"]),
    ("/part", ["PART :#chat"]),
    ("/part see you", ["PART #chat :see you"]),
    ("/part #chat bye all", ["PART #chat :bye all"]),
    ("/topic new topic", ["TOPIC #chat :new topic"]),
    ("/whois bob", ["WHOIS :bob"]),
    ("/list", ["LIST"]),
    ("/quote PRIVMSG bob :raw hi", ["PRIVMSG bob :raw hi"]),
    ("/kick bob", ["KICK #chat :bob"]),
    ("/kick bob go away", ["KICK #chat bob :go away"]),
    ("/ban bob", ["MODE #chat +b :bob!*@*"]),
    ("/ban *!*@evil.example", ["MODE #chat +b :*!*@evil.example"]),
    ("/unban bob", ["MODE #chat -b :bob!*@*"]),
    ("/op bob", ["MODE #chat +o :bob"]),
    ("/deop bob", ["MODE #chat -o :bob"]),
    ("/voice bob", ["MODE #chat +v :bob"]),
    ("/devoice bob", ["MODE #chat -v :bob"]),
    ("/mode +m", ["MODE #chat :+m"]),
    ("/mode", ["MODE :#chat"]),
    ("/mode #chat +l 10", ["MODE #chat +l :10"]),
    ("/mode alice +i", ["MODE alice :+i"]),
    ("/invite carol", ["INVITE carol :#chat"]),
    ("/invite carol #other", ["INVITE carol :#other"]),
    ("/away lunch", ["AWAY :lunch"]),
    ("/away", ["AWAY"]),
    ("/dance", []),
])
def test_lines_become_irc(line, sent):
    assert commands.run(online(), line).send == sent


@pytest.mark.parametrize("line", [
    "/msg", "/msg bob", "/me", "/nick", "/nick a!", "/nick 9lives", "/join", "/join nochan", "/whois",
    "/kick", "/ban", "/op", "/op a b", "/quote", "/quote A\rB", "/quote " + "x" * 600, "/window 9",
    "/oper", "/invite", "/r hi", "/search", "/window x",
])
def test_bad_usage_says_how_and_sends_nothing(line):
    reaction = commands.run(online(), line)
    assert reaction.send == [] and reaction.entries and reaction.entries[0].kind is Kind.ERROR


def test_quit_and_exit():
    assert commands.run(online(), "/exit").quit == "Leaving"
    assert commands.run(online(), "/QUIT gone fishing").quit == "gone fishing"
    assert commands.is_quit("/exit") and commands.is_quit(" /quit now ") and not commands.is_quit("//exit")


def test_reconnect_retries_only_while_the_connection_is_down():
    state = online()
    reaction = commands.run(state, "/reconnect")
    assert not reaction.reconnect and "Still connected" in reaction.entries[0].text
    state.disconnected("Connection reset")
    assert commands.run(state, "/reconnect").reconnect


def test_room_commands_refuse_outside_a_room():
    state = online()
    state.windows.switch(1)  # the server window
    for line in ("hello", "/kick bob", "/op bob", "/topic x", "/names"):
        reaction = commands.run(state, line)
        assert reaction.send == [] and reaction.entries[0].kind is Kind.ERROR, line


def test_query_opens_a_window_and_text_goes_there():
    state = online()
    reaction = commands.run(state, "/query Bob hi you")
    assert state.current.name == "Bob" and state.current.is_query
    assert reaction.send == ["PRIVMSG Bob :hi you"]
    assert commands.run(state, "more").send == ["PRIVMSG Bob :more"]
    commands.run(state, "/close")
    assert state.current.name == "#chat" and state.window_of("bob") is None


def test_reply_goes_to_the_last_private_sender():
    state = online()
    handle(state, parse_message(":carol!u@h PRIVMSG alice :psst"))
    assert commands.run(state, "/r yes?").send == ["PRIVMSG carol :yes?"]


def test_oper_asks_for_the_password_then_sends_it_once():
    state = online()
    assert commands.run(state, "/oper admin").send == []
    assert state.oper_name == "admin"
    assert state.oper("secret").send == ["OPER admin :secret"]
    assert state.oper_name is None


def test_close_on_a_room_parts_it_and_the_server_window_stays():
    state = online()
    assert commands.run(state, "/close").send == ["PART :#chat"]
    assert state.current.key == ""
    assert commands.run(state, "/close").entries[0].kind is Kind.ERROR


def test_window_switches_and_offline_commands():
    state = online()
    assert commands.run(state, "/window").entries[0].text == "Windows: 1: host:1, 2: #chat"
    assert commands.run(state, "/window 1").entries == [] and state.windows.active == 0
    assert commands.works_offline("/window 2") and commands.works_offline("/search x")
    assert not commands.works_offline("hello") and not commands.works_offline("/join #x")


def test_join_refuses_past_the_window_limit_and_a_server_join_never_takes_the_server_window():
    from curses_client.windows import MAX_WINDOWS

    state = online()
    for number in range(MAX_WINDOWS):
        handle(state, parse_message(f":alice!u@h JOIN #r{number}"))
    assert len(state.windows.windows) == MAX_WINDOWS
    reaction = commands.run(state, "/join #more")
    assert reaction.send == [] and "Too many windows" in reaction.entries[0].text
    handle(state, parse_message(":alice!u@h JOIN #forced"))
    assert not state.windows.server.joined and state.windows.server.members == {}
    handle(state, parse_message(":bob!u@h JOIN #elsewhere"))  # someone else, a room we are not in
    assert state.window_of("#elsewhere") is None


def test_a_msg_to_another_room_reads_as_sent_elsewhere_and_part_needs_the_room():
    state = online()
    reaction = commands.run(state, "/msg #other hello there")
    assert reaction.send == ["PRIVMSG #other :hello there"]
    assert reaction.entries[0].kind is Kind.PRIVATE_OUT and reaction.entries[0].sender == "#other"
    handle(state, parse_message(":alice!u@h PART #chat"))
    reaction = commands.run(state, "/part")
    assert reaction.send == [] and reaction.entries[0].text == "You are not in #chat."


def test_a_target_that_would_break_the_line_is_refused():
    for line in ("/query :bob", "/whois a,b", "/kick :x", "/msg :x hi"):
        reaction = commands.run(online(), line)
        assert reaction.send == [] and "is not a name" in reaction.entries[0].text, line
