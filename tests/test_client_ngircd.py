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
