"""The real client against a scripted IRC server: exact lines in, exact lines out.

A listening socket in the test plays the server, so the test decides every line the client
sees (PING, numerics the chat server never sends, an overlong line) and checks every line
the client sends back.
"""

from __future__ import annotations

import select
import socket
import sys

import pytest

from ircchat.protocol import LineFramer, decode_line
from client_harness import Terminal, terminals, wait_until  # noqa: F401  (terminals: a fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]


class ScriptedServer:
    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.framer = LineFramer()
        self.lines: list[str] = []

    def accept(self) -> None:
        ready, _, _ = select.select([self.listener], [], [], 10)
        assert ready, "the client never connected"
        self.conn, _ = self.listener.accept()

    def send(self, *lines: str) -> None:
        assert self.conn is not None
        self.conn.sendall("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def _poll(self, seconds: float) -> None:
        assert self.conn is not None
        ready, _, _ = select.select([self.conn], [], [], seconds)
        if ready:
            data = self.conn.recv(65536)
            assert data, "the client closed the connection"
            self.lines += [decode_line(line) for line in self.framer.feed(data) if isinstance(line, bytes)]

    def expect(self, line: str) -> None:
        wait_until(lambda: line in self.lines, lambda: f"{line!r} from the client (got {self.lines})", poll=self._poll)
        self.lines.remove(line)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.close()


def test_registration_autojoin_ping_and_odd_lines(scripted, terminals):
    terminal: Terminal = terminals(["--port", str(scripted.port), "--username", "alice", "--room", "#den"])
    scripted.accept()
    scripted.expect("NICK :alice")
    scripted.expect("USER alice 0 * :alice")
    scripted.send(":irc.test 001 alice :Welcome alice", ":irc.test 005 alice CHANTYPES=# :are supported")
    scripted.expect("PING :curses-client-autojoin")
    scripted.send(":irc.test PONG irc.test :curses-client-autojoin")
    scripted.expect("JOIN :#den")  # no automatic JOIN came first: the client joins --room
    scripted.send(":alice!a@h JOIN #den", ":irc.test 353 alice = #den :alice @carol", ":irc.test 366 alice #den :End")
    terminal.wait_screen(lambda: "| alice | 2:#den | 2 online | online" in terminal.text(), "the status line")
    scripted.send("PING :keepalive-42")
    scripted.expect("PONG :keepalive-42")
    scripted.send(
        ":irc.test 999 alice some :unknown numeric text",
        ":irc.test NOTICE alice :a notice",
        ":carol!c@h PRIVMSG #den :" + "x" * 600,  # overlong: skipped, not shown, no crash
        ":carol!c@h PRIVMSG #den :still here",
    )
    terminal.wait_for("<carol> still here")
    assert "some unknown numeric text" in terminal.text()
    assert "xxxxxxxxxx" not in terminal.text()
    terminal.type("\x1b1")  # a server's notice is in the server window, with the welcome
    terminal.wait_for("-irc.test- a notice")
    assert "Welcome alice" in terminal.text() and "The server supports: CHANTYPES=#" in terminal.text()
    terminal.type("\x1b2")
    scripted.send("ERROR :Closing Link: test over")
    scripted.conn.close()
    scripted.conn = None
    terminal.wait_for("The server closed the link: Closing Link: test over")
    terminal.wait_for("Lost the connection")
    terminal.type("/exit\r")
    assert terminal.wait_exit() == 0


def test_nick_in_use_brings_the_prompt_back(scripted, terminals):
    terminal: Terminal = terminals(["--port", str(scripted.port), "--username", "alice"])
    scripted.accept()
    scripted.expect("NICK :alice")
    scripted.expect("USER alice 0 * :alice")
    scripted.send(":irc.test 433 * alice :Nickname is already in use")
    terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Username:"), "the name prompt")
    terminal.type("alice2\r")
    scripted.expect("NICK :alice2")
    scripted.send(":irc.test 001 alice2 :Welcome")
    scripted.expect("PING :curses-client-autojoin")
    terminal.wait_screen(lambda: "| alice2 | 1:(server) |" in terminal.text(), "the new name in the status line")


def test_hostile_lines_leave_the_client_running_and_the_terminal_untouched(scripted, terminals):
    terminal: Terminal = terminals(["--port", str(scripted.port), "--username", "alice"])
    scripted.accept()
    scripted.expect("USER alice 0 * :alice")
    scripted.send(":irc.test 001 alice :Welcome", ":alice!a@h JOIN #chat")
    terminal.wait_for("You joined #chat")
    assert scripted.conn is not None
    scripted.conn.sendall(
        b":irc.test 001\r\n:irc.test 353\r\n:irc.test 366\r\n:irc.test 433\r\nPRIVMSG\r\n:bob PRIVMSG #chat\r\n"
        b":@ PRIVMSG #chat :no nick\r\n:! QUIT\r\n: NOTICE\r\n\r\n   \r\n:only.a.prefix\r\n"
        b":bob PRIVMSG #chat :bad \xff\xfe utf-8 \xc3\r\n"
        b":bob PRIVMSG #chat :" + b"z" * 20000 + b"\r\n"  # past the framer's limit, tags or not
        b"\x1b]0;pwned\x07 :x\r\n:bob \x1b[2J\x9b31m :y\r\n"  # escapes as the command itself
        b":alice!a@h JOIN :#two words\r\n:alice!a@h NICK :new nick\r\n"  # would break our own lines
        b":bob PRIVMSG #chat :\x1b[10;10Hmoved \x1bP1$r\x1b\\ \x85\x9d8;;x\x07 end-of-hostile\r\n"
    )
    terminal.wait_for("end-of-hostile")
    assert b"pwned" not in terminal.raw and "pwned" not in terminal.screen.title
    assert "You joined #chat" in terminal.text() and "<bob> moved" in terminal.text()  # not cleared, not moved
    assert "bad \ufffd\ufffd utf-8 \ufffd" in terminal.text()
    assert "zzzzzzzzzz" not in terminal.text()
    terminal.type("still here\r")
    scripted.expect("PRIVMSG #chat :still here")  # the room and the nick were not taken over
    terminal.wait_screen(lambda: "| alice | 2:#chat |" in terminal.text(), "the status line unchanged")
    assert terminal.process.isalive()
