"""Input end to end (issue 12): pastes without bracketed paste, a server that stops reading,
emoji sequences on screen. The real client in a pty (client_harness.Terminal), no sleeps.
"""

from __future__ import annotations

import socket
import sys
import time

import pytest
from client_harness import DEADLINE, peers, terminals  # noqa: F401  (fixtures)
from test_client_e2e import joined_client, privmsg, server  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal"),
]

QUIT_PROMPTLY = 5.0  # /quit waits at most 2 s for the server to close; anything near 10 s is a hang


def test_lines_pasted_without_bracketed_paste_are_held_and_are_text(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    terminal.wait_for("bob joined")
    terminal.type("hello there\r/quit now\rlast line")  # one write: how a terminal pastes
    terminal.wait_for("hello there\u21b5/quit now\u21b5last line")
    assert "<alice> hello" not in terminal.text()  # held in the input line, nothing sent
    terminal.type("\r")
    privmsg(bob, "hello there")
    privmsg(bob, "/quit now")  # said, not run
    privmsg(bob, "last line")
    terminal.wait_for("<alice> last line")
    assert terminal.process.isalive()


def test_a_long_unbracketed_paste_is_summarised_and_esc_clears_it(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    terminal.type("".join(f"pasted line {number}\n" for number in range(1, 51)))
    terminal.wait_for("[paste: 51 lines, Enter sends, Esc clears]")  # 50 lines and an empty last
    terminal.type("\x1b")
    terminal.wait_screen(lambda: "[paste" not in terminal.text(), "the paste to be cleared")
    terminal.type("typed again")
    terminal.wait_for("> typed again")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("leave", "status"), [("\x15/quit\r", 0), ("\x03", 130)], ids=["quit", "ctrl-c"])
def test_typing_stays_responsive_and_leaving_is_prompt_when_the_server_stops_reading(terminals, leave, status):
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        terminal = terminals(["--port", str(listener.getsockname()[1]), "--username", "alice"])
        listener.settimeout(DEADLINE)
        link, _ = listener.accept()  # from here on, the server never reads
        link.sendall(b":srv 001 alice :Welcome\r\n:alice!a@h JOIN #chat\r\n")
        terminal.wait_for("You joined #chat")
        line = "x" * 499 + "\n"
        paste = line * 10_000  # 5 MB
        for start in range(0, len(paste), 1 << 16):
            terminal.type(paste[start : start + (1 << 16)])
            terminal.pump(0)
        terminal.wait_for("[paste: 10001 lines")
        terminal.type("\r")  # sends 10,000 lines to a server that reads none of them
        terminal.wait_screen(lambda: "[paste" not in terminal.text(), "the paste to be taken")
        terminal.type("still typing")
        terminal.wait_for("> still typing")
        terminal.type(leave)
        started = time.monotonic()
        assert terminal.wait_exit() == status
        assert time.monotonic() - started < QUIT_PROMPTLY
        assert b"Traceback" not in terminal.raw
        link.close()
    finally:
        listener.close()


def test_emoji_sequences_reach_the_screen_as_one_character_each(server, terminals, peers):
    port = server.address[1]
    terminal = joined_client(terminals, port)
    bob = peers(port, "bob")
    family, flag, thumbs = "\U0001F468\u200d\U0001F469\u200d\U0001F467", "\U0001F1EB\U0001F1F7", "\U0001F44D\U0001F3FD"
    bob.send("PRIVMSG", "#chat", f"{family} {flag} {thumbs} after\u200bzero")
    terminal.wait_for("after<U+200B>zero")  # an invisible character is shown by name
    row = next(line for line in terminal.lines() if "after" in line)
    # the joiners are not named; a sequence curses would count as more cells than we do is
    # drawn as its first character (see width.drawable), the flag as it is
    assert "<U+200D>" not in row
    assert "<bob>\U0001F468" + flag + "\U0001F44D" + "after" in row.replace(" ", "")
    terminal.type(family + "x")  # the input line steps over the sequence as one character
    terminal.wait_for("x")
    terminal.type("\x7f\x7f")  # two backspaces: "x", then the whole family
    terminal.wait_screen(lambda: terminal.lines()[-1].rstrip() == ">", "an empty input line")


def test_the_log_file_records_the_connection_and_its_traffic(server, terminals, peers, tmp_path):
    port = server.address[1]
    log_path = tmp_path / "client.log"
    terminal = terminals(["--port", str(port), "--username", "alice", "--log-file", str(log_path)],
                         env={"CHAT_PASSWORD": "hunter2"})
    terminal.wait_for("You joined #chat")
    terminal.type("hello log\r")
    terminal.wait_for("<alice> hello log")
    terminal.type("/quit\r")
    assert terminal.wait_exit() == 0
    log = log_path.read_text(encoding="utf-8")
    for needle in (f"connected to 127.0.0.1:{port}", "-> b'NICK :alice'", "<- b':chat.local 001 alice",
                   "-> b'PRIVMSG #chat :hello log'", "-> b'QUIT", "disconnected: "):
        assert needle in log, log
    assert "hunter2" not in log and "PASS (hidden)" in log


def test_a_second_ctrl_c_while_quitting_leaves_at_once_without_a_traceback(terminals):
    # The first Ctrl-C sends QUIT and waits (up to 2 s) for the server to close; a server that
    # keeps the link open, and an impatient second Ctrl-C, ended the client with a traceback.
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        terminal = terminals(["--port", str(listener.getsockname()[1]), "--username", "alice"])
        listener.settimeout(DEADLINE)
        link, _ = listener.accept()
        link.sendall(b":srv 001 alice :Welcome\r\n:alice!a@h JOIN #chat\r\n")
        terminal.wait_for("You joined #chat")
        terminal.type("\x03")
        link.settimeout(DEADLINE)
        received = b""
        while b"QUIT" not in received:  # the client is now waiting for the server to close
            data = link.recv(4096)
            assert data, "the client closed before sending QUIT"
            received += data
        terminal.type("\x03")
        status = terminal.wait_exit()
        assert b"Traceback" not in terminal.raw, terminal.raw[-600:].decode("utf-8", "replace")
        assert status == 130
        link.close()
    finally:
        listener.close()
