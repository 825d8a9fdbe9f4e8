"""Hostile servers, in memory: any bytes in, and the client's pure parts neither fail nor
let a control character through to what the terminal would be given.

The path is the one the network thread and the UI loop take (``net.read_messages`` over a
``LineFramer``, ``ChatState.handle``, the scrollback's render and wrap), with the user's
own actions (saying something, /users, /nick, reconnecting, the prompts) mixed in, so that
state a server line left behind is also used to build lines we send.
"""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ircchat.protocol import LineFramer, encode_line, parse_message
from curses_client import commands
from curses_client.entries import render
from curses_client.handle import handle
from curses_client.model import ChatState, is_safe_name
from curses_client.net import read_messages
from curses_client.scrollback import Scrollback
from curses_client.windows import MAX_MEMBERS, MAX_WINDOWS

ME = "alice"


def has_control(text: str) -> bool:
    """C0 (tab included), DEL, C1 and so ESC: what must never reach the terminal."""
    return any(unicodedata.category(char) == "Cc" for char in text)


nasty_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x1b", "\x9b", "\x07", "\x01", "\x03", "\x7f", "\u202e", "\t", "\x00", "\r", " ", ":", "!",
                         "@", "#", ",", "\x1b[2J", "\x1b]0;t\x07", "\x0304,12", "漢", "\u0301", "\ufffd", ME, "#chat"]),
    ),
    max_size=12,
).map("".join)
commands_seen = st.sampled_from(
    ["PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "NICK", "TOPIC", "PING", "PONG", "ERROR", "KICK", "MODE",
     "001", "005", "332", "333", "353", "366", "372", "431", "432", "433", "436", "464", "999", "٣", "\x1b[2J"]
)
prefixes = st.one_of(
    st.none(),
    st.sampled_from([ME, f"{ME}!a@h", "bob!b@h", "!", "@", "!@", "", "srv"]),
    nasty_text.map(lambda text: text.replace(" ", "")),
)


@st.composite
def server_lines(draw) -> bytes:
    """One line as a hostile server might send it: tags, any prefix, odd params, bad bytes."""
    words = []
    if draw(st.booleans()):
        words.append("@" + draw(nasty_text).replace(" ", ""))
    prefix = draw(prefixes)
    if prefix is not None:
        words.append(":" + prefix)
    words.append(draw(st.one_of(commands_seen, nasty_text)))
    words += [word.replace(" ", "") or "x" for word in draw(st.lists(nasty_text, max_size=4))]
    if draw(st.booleans()):
        words.append(":" + draw(nasty_text))
    data = " ".join(words).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=8))  # invalid UTF-8, stray CR or NUL
    if draw(st.integers(0, 20)) == 0:
        data += b"y" * draw(st.integers(500, 9000))  # overlong, even for a tagged line
    return data + draw(st.sampled_from([b"\r\n", b"\n", b"\r\r\n"]))


TYPED = {
    "say": "hi \x1b[2J there", "me": "/me waves", "msg": "/msg bob psst", "users": "/users", "nick": "/nick alice2",
    "join": "/join #other", "part": "/part", "close": "/close", "query": "/query bob", "kick": "/kick bob out",
    "op": "/op bob", "next-window": "/window 2", "first-window": "/window 1", "search": "/search hi",
}
user_actions = st.sampled_from([*TYPED, "reconnect", "prompt-nick", "prompt-password"])


def act(state: ChatState, action: str):
    if action in TYPED:
        return commands.run(state, TYPED[action])
    if action == "reconnect":
        state.disconnected("gone")
        return state.connected()
    if action == "prompt-nick":
        return state.choose_nick(ME)
    return state.choose_password("pw\x1b")


def check(state: ChatState, scrollback: Scrollback, reactions, width: int) -> None:
    for reaction in reactions:
        for window, entry in reaction.shown:
            scrollback.add(entry)
            assert window is None or window in state.windows.windows
            styled = render(entry)
            assert not has_control(styled.text), styled.text
        for line in reaction.send:
            data = encode_line(line)  # what Sender would write: one line, CRLF only at the end
            assert data.count(b"\n") == 1 and b"\r" not in data[:-2] and b"\x00" not in data
            parse_message(line)  # a line we send is a line a server can parse
    for row in scrollback.visible(width, 30):
        assert not has_control(row.styled.text[row.start : row.end])
    for window in state.windows.windows:
        assert len(window.members) <= MAX_MEMBERS
        for shown in (window.name, window.topic, *(marks + nick for marks, nick in window.members.values())):
            assert not has_control(shown)
    assert len(state.windows.windows) <= MAX_WINDOWS and 0 <= state.windows.active < len(state.windows.windows)
    assert state.nick is None or is_safe_name(state.nick)


def fresh_state() -> ChatState:
    state = ChatState("host:1", "#chat", ME, password="pw")
    state.connected()
    handle(state, parse_message(f":srv 001 {ME} :Welcome"))
    handle(state, parse_message(f":{ME}!a@h JOIN #chat"))
    return state


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(server_lines(), user_actions), min_size=1, max_size=25),
    st.integers(1, 200),
    st.integers(1, 120),
)
def test_hostile_lines_and_user_actions_never_fail_or_reach_the_terminal(steps, chunk, width):
    state, scrollback, framer = fresh_state(), Scrollback(), LineFramer()
    for step in steps:
        if isinstance(step, str):
            reactions = [act(state, step)]
        else:
            reactions = []
            for start in range(0, len(step), chunk):  # the line split across reads at random
                for message in read_messages(framer, step[start : start + chunk]):
                    reactions.append(handle(state, message))
        check(state, scrollback, reactions, width)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=12), st.integers(1, 120))
def test_random_bytes_through_the_framer_never_fail(chunks, width):
    state, scrollback, framer = fresh_state(), Scrollback(), LineFramer()
    for chunk in chunks:
        reactions = [handle(state, message) for message in read_messages(framer, chunk)]
        check(state, scrollback, reactions, width)


def test_a_huge_line_is_skipped_and_the_next_one_is_read():
    framer = LineFramer()
    assert read_messages(framer, b":bob PRIVMSG #chat :" + b"x" * 20000) == []
    assert read_messages(framer, b"x" * 20000 + b"\r\n") == []
    [message] = read_messages(framer, b":bob PRIVMSG #chat :after\r\n")
    assert message.params == ("#chat", "after")


def test_lines_with_missing_parts_are_shown_or_ignored_never_fatal():
    state = fresh_state()
    for line in ["PRIVMSG", "PRIVMSG #chat", ":bob PRIVMSG #chat :", "NOTICE", "JOIN", "PART", ":@ QUIT", ":! NICK",
                 "001", "353", "366", "332", "433", "464", ":srv 999", "TOPIC", "ERROR", ": KICK", "\x1b[2J x"]:
        reaction = handle(state, parse_message(line))
        assert not any(has_control(entry.text + entry.sender) for entry in reaction.entries)


def test_a_join_or_nick_that_would_break_our_own_lines_is_not_adopted():
    state = fresh_state()
    handle(state, parse_message(f":{ME}!a@h JOIN :#a b"))
    handle(state, parse_message(f":{ME}!a@h NICK :x y"))
    assert [window.name for window in state.windows.windows] == ["host:1", "#chat"] and state.nick == ME
    assert commands.run(state, "still fine").send == ["PRIVMSG #chat :still fine"]
    state.disconnected("gone")
    assert state.connected().send == ["CAP LS 302", "PASS :pw", f"NICK :{ME}", f"USER {ME} 0 * :{ME}"]
