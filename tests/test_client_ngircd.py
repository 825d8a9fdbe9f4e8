"""Interoperability: the real client against ngircd, a third-party IRC server.

ngircd does not put anyone in a channel, so this also checks that the client JOINs its
``--room`` itself after registering. Skipped when ngircd is not installed (``.ci/run``
installs the Debian package).
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from client_harness import IrcPeer, Terminal, free_port, start_ngircd, wait_until

NGIRCD = "/usr/sbin/ngircd"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(NGIRCD), reason=f"ngircd is not installed at {NGIRCD}"),
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def ngircd_port(tmp_path):
    port = free_port()
    server = start_ngircd(tmp_path, port)
    try:
        wait_until(lambda: accepts_connections(port) or server.poll() is not None, "ngircd to listen")
        if server.poll() is not None:
            pytest.fail(f"ngircd exited with status {server.returncode}; config in {tmp_path}")
        yield port
    finally:
        server.kill()  # only the process this fixture started, by its own handle
        server.wait()


def test_client_registers_joins_and_chats_on_ngircd(ngircd_port):
    terminal = Terminal(["--port", str(ngircd_port), "--username", "alice", "--room", "#interop"])
    bob = None
    try:
        terminal.wait_for("You joined #interop", timeout=20)
        bob = IrcPeer(ngircd_port, "bob")
        bob.send("JOIN", "#interop")
        terminal.wait_for("bob joined #interop")
        terminal.wait_screen(lambda: "| alice | 2:#interop | 2 online | online" in terminal.text(), "status line")
        bob.send("PRIVMSG", "#interop", "hello from ngircd")
        terminal.wait_for("<bob> hello from ngircd")
        terminal.type("hi bob\r")
        message = bob.expect(lambda m: m.command == "PRIVMSG", "alice's message")
        assert message.params == ("#interop", "hi bob") and message.nick == "alice"
        terminal.type("/exit\r")
        assert terminal.wait_exit() == 0
        quit_message = bob.expect(lambda m: m.command == "QUIT" and m.nick == "alice", "alice's QUIT")
        assert "Leaving" in quit_message.params[0]
    finally:
        terminal.close()
        if bob is not None:
            bob.close()


def test_rules_from_005_and_operator_commands_on_ngircd(ngircd_port):
    """ngircd's own rules (a dash in a nick, which our server refuses), op and voice marks
    from its PREFIX, and the moderation commands, each answered by one readable line."""
    terminal = Terminal(["--port", str(ngircd_port), "--username", "alice", "--room", "#ops"])
    bob = None
    try:
        terminal.wait_for("You joined #ops", timeout=20)
        terminal.type("/nick n-alice\r")
        terminal.wait_for("You are now known as n-alice")
        bob = IrcPeer(ngircd_port, "bob")
        bob.send("JOIN", "#ops")
        terminal.wait_for("bob joined #ops")
        terminal.type("/users\r")
        terminal.wait_for("2 in #ops: bob, @n-alice")  # the one who made the room is its operator
        terminal.type("/op bob\r")
        terminal.wait_for("n-alice set mode +o bob on #ops")
        terminal.type("/voice bob\r")
        terminal.wait_for("n-alice set mode +v bob on #ops")
        terminal.type("/users\r")
        terminal.wait_for("2 in #ops: @bob, @n-alice")
        terminal.type("/whois bob\r")
        terminal.wait_for("bob is on server irc.test.local")
        terminal.type("/topic plans for today\r")
        terminal.wait_for("n-alice set the topic: plans for today")
        terminal.type("/kick bob enough\r")
        kick = bob.expect(lambda m: m.command == "KICK", "bob's KICK")
        assert kick.params == ("#ops", "bob", "enough")
        terminal.wait_for("bob was kicked from #ops by n-alice (enough)")
        terminal.wait_screen(lambda: "| 2:#ops | 1 online |" in terminal.text(), "the member count")
        terminal.type("/mode -o n-alice\r")
        terminal.wait_for("n-alice set mode -o n-alice on #ops")
        terminal.type("/mode +m\r")
        terminal.wait_for("You are not a room operator in #ops.")
        terminal.type("/oper nobody\r")
        terminal.wait_screen(lambda: terminal.lines()[-1].startswith("Operator password:"), "the masked prompt")
        terminal.type("secret\r")
        terminal.wait_screen(lambda: "The password was refused" in terminal.text()
                             or "no operator entry" in terminal.text(), "the refusal")
        assert "secret" not in terminal.text()
        assert not any(line[6:9].isdigit() and line[9:10] == " " for line in terminal.lines())  # no raw numeric
    finally:
        terminal.close()
        if bob is not None:
            bob.close()
