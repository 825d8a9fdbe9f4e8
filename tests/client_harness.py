"""Test helpers for the client: the real client in a pseudo-terminal, raw IRC peers, waiting.

``Terminal`` runs ``python -m curses_client`` in a pty (ptyprocess) and feeds everything it
draws into a ``pyte`` screen, so tests read the screen as a user would see it. ``IrcPeer`` is
a bare socket that speaks IRC. Nothing here sleeps to synchronise: ``wait_until`` polls a
condition until a deadline and fails with a description of what it waited for.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyte
import pytest
from ptyprocess import PtyProcess

from ircchat.protocol import LineFramer, Message, decode_line, encode_line, format_line, parse_message

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 10.0  # seconds any one condition may take, even on a loaded machine


def wait_until(
    condition: Callable[[], object],
    what: str | Callable[[], str],
    timeout: float = DEADLINE,
    poll: Callable[[float], None] | None = None,
) -> object:
    """Call ``poll(seconds)`` (which waits for input) until ``condition()`` is truthy.

    ``what`` describes the wait for the failure message; a callable is asked only on
    failure, so it can show the state at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        if poll is not None:
            poll(min(0.05, remaining))
        else:
            time.sleep(min(0.01, remaining))  # polling interval of a deadline wait, not a sync


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScrollingScreen(pyte.Screen):
    """pyte's Screen plus SU/SD (CSI n S / CSI n T), which ncurses uses to scroll a region.

    pyte 0.8 ignores both; without them a scrolled pane would look corrupted in tests while
    it is fine in a real terminal.
    """

    def scroll_up(self, count: int = 1, *args: object, **kwargs: object) -> None:
        self._scroll(count or 1, up=True)

    def scroll_down(self, count: int = 1, *args: object, **kwargs: object) -> None:
        self._scroll(count or 1, up=False)

    def _scroll(self, count: int, up: bool) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        y, x = self.cursor.y, self.cursor.x
        self.cursor.y = bottom if up else top
        for _ in range(count):
            self.index() if up else self.reverse_index()
        self.cursor.y, self.cursor.x = y, x


class ScrollingByteStream(pyte.ByteStream):
    csi = {**pyte.ByteStream.csi, "S": "scroll_up", "T": "scroll_down"}


class Terminal:
    """The client running in a pty of ``rows`` x ``cols``, drawn onto a pyte screen."""

    def __init__(self, args: list[str], rows: int = 24, cols: int = 80, term: str = "xterm-256color",
                 env: dict[str, str] | None = None, command: list[str] | None = None,
                 cwd: Path = REPO) -> None:
        overrides = env or {}
        env = dict(os.environ, TERM=term, LANG="C.UTF-8", LC_ALL="C.UTF-8", PYTHONPATH=str(REPO))
        for name in ("COLUMNS", "LINES", "CHAT_PASSWORD"):  # nothing from the tester's own shell
            env.pop(name, None)
        env.update(overrides)
        self.screen = ScrollingScreen(cols, rows)
        self.stream = ScrollingByteStream(self.screen)
        self.raw = bytearray()  # everything the client wrote, for tests of escape output
        command = command or [sys.executable, "-m", "curses_client"]  # or an installed ``chat``
        self.process = PtyProcess.spawn([*command, *args], env=env, cwd=str(cwd), dimensions=(rows, cols))

    # -- reading ------------------------------------------------------------------------------

    def pump(self, timeout: float = 0.05) -> bool:
        """Feed whatever the client writes within ``timeout`` into the screen; False at EOF."""
        ready, _, _ = select.select([self.process.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.process.fd, 65536)
        except OSError:  # EIO: the client exited and everything it wrote has been read
            return False
        if not data:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(self.lines())

    def wait_for(self, needle: str, timeout: float = DEADLINE) -> None:
        wait_until(lambda: needle in self.text(), lambda: f"{needle!r} on screen:\n{self.text()}", timeout, self.pump)

    def wait_screen(self, condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
        wait_until(condition, lambda: f"{what}; screen:\n{self.text()}", timeout, self.pump)

    # -- writing ------------------------------------------------------------------------------

    def type(self, text: str) -> None:
        self.process.write(text.encode("utf-8"))

    def resize(self, rows: int, cols: int) -> None:
        self.process.setwinsize(rows, cols)  # the kernel sends the client a real SIGWINCH
        self.screen.resize(rows, cols)

    # -- ending -------------------------------------------------------------------------------

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        open_ = [True]

        def read_to_eof(seconds: float) -> None:
            if open_[0]:
                open_[0] = self.pump(seconds)
            else:
                time.sleep(min(seconds, 0.01))  # polling interval while the process is reaped

        # the last bytes (the terminal being restored) may still sit in the pty after exit
        wait_until(lambda: not open_[0] and not self.process.isalive(), "the client to exit", timeout, read_to_eof)
        self.process.wait()
        return self.process.exitstatus

    def close(self) -> None:
        if self.process.isalive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process.close()


@pytest.fixture
def terminals():
    """Start clients in ptys with ``terminals(args, rows, cols, term, env)``; each is killed at the end."""
    started: list[Terminal] = []

    def start(args: list[str], rows: int = 24, cols: int = 80, term: str = "xterm-256color",
              env: dict[str, str] | None = None) -> Terminal:
        terminal = Terminal(args, rows, cols, term, env)
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()


def run_client(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m curses_client ARGS`` with no terminal, for the paths that end before one."""
    return subprocess.run(
        [sys.executable, "-m", "curses_client", *args],
        cwd=REPO, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )


class IrcPeer:
    """A raw-socket IRC user for the other side of a conversation."""

    def __init__(self, port: int, nick: str, host: str = "127.0.0.1") -> None:
        self.nick = nick
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.framer = LineFramer()
        self.received: list[Message] = []
        self.send("NICK", nick)
        self.send("USER", nick, "0", "*", nick)
        self.expect(lambda m: m.command == "001", "001 welcome")

    def send(self, command: str, *params: str) -> None:
        self.sock.sendall(encode_line(format_line(command, *params)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return True
        data = self.sock.recv(65536)
        if not data:
            return False
        for line in self.framer.feed(data):
            if isinstance(line, bytes):
                message = parse_message(decode_line(line))
                if message.command == "PING":
                    self.send("PONG", *message.params[-1:])
                self.received.append(message)
        return True

    def expect(self, predicate: Callable[[Message], bool], what: str, timeout: float = DEADLINE) -> Message:
        open_ = [True]

        def found() -> Message | None:
            return next((m for m in self.received if predicate(m)), None)

        def poll(seconds: float) -> None:
            if open_[0]:
                open_[0] = self._read(seconds)
            else:
                raise AssertionError(f"connection closed while waiting for {what}")

        message = wait_until(found, lambda: f"{what} (got {[(m.command, *m.params) for m in self.received][-20:]})", timeout, poll)
        self.received.remove(message)
        return message

    def close(self) -> None:
        self.sock.close()


def start_ngircd(tmp_path: Path, port: int) -> subprocess.Popen:
    """ngircd on 127.0.0.1:port with a minimal config in ``tmp_path``; the caller stops it."""
    config = tmp_path / "ngircd.conf"
    motd = tmp_path / "motd"
    motd.write_text("test server\n")
    config.write_text(
        "[Global]\n"
        "Name = irc.test.local\n"
        "Info = test server\n"
        "Listen = 127.0.0.1\n"
        f"Ports = {port}\n"
        f"PidFile = {tmp_path / 'ngircd.pid'}\n"
        f"MotdFile = {motd}\n"
        f"ServerUID = {os.getuid()}\n"
        f"ServerGID = {os.getgid()}\n"
        "[Limits]\n"
        "MaxNickLength = 20\n"
        "[Options]\n"
        "PAM = no\n"
        "Ident = no\n"
        "DNS = no\n"
        "SyslogFacility = local1\n"
    )
    return subprocess.Popen(
        ["/usr/sbin/ngircd", "--nodaemon", "--passive", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def peers():
    """Open raw-socket users with ``peers(port, nick, kind=IrcPeer)``; each is closed at the end."""
    started: list[IrcPeer] = []

    def connect(port: int, nick: str, kind: type[IrcPeer] = IrcPeer) -> IrcPeer:
        peer = kind(port, nick)
        started.append(peer)
        return peer

    yield connect
    for peer in started:
        peer.close()
