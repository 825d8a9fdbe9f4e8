"""A raw-socket IRC peer for tests: send lines, wait for lines with a deadline, never sleep."""

from __future__ import annotations

import re
import socket
import time

from ircchat.protocol import Message, parse_message

DEFAULT_WAIT = 5.0


class Peer:
    """One TCP connection to a server, read line by line with deadlines."""

    def __init__(self, address: tuple[str, int], nick: str | None = None) -> None:
        self.nick = nick
        self.sock = socket.create_connection(address, timeout=DEFAULT_WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
        self._buffer = b""
        self.closed = False
        self.seen: list[str] = []  # every line read so far, for failure messages

    def send(self, *lines: str) -> None:
        self.send_raw("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self, deadline: float) -> str | None:
        """The next line, or None at EOF; AssertionError if the deadline passes first."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for a line; seen: {self.seen[-15:]}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return None
            self._buffer += data
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        self.seen.append(line)
        return line

    def expect(self, pattern: str, timeout: float = DEFAULT_WAIT) -> Message:
        """Read until a line matches ``pattern`` (re.search); return it parsed."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise AssertionError(f"connection closed before {pattern!r}; seen: {self.seen[-15:]}")
            if regex.search(line):
                return parse_message(line)

    def collect_until(self, pattern: str, timeout: float = DEFAULT_WAIT) -> list[str]:
        """Every line read up to and including the first that matches ``pattern``."""
        start = len(self.seen)
        self.expect(pattern, timeout)
        return self.seen[start:]

    def sync(self, token: str = "sync") -> list[str]:
        """Round-trip a PING; return what arrived before its PONG.

        The server handles one connection's lines in order, so anything our earlier commands
        caused for us is already queued ahead of the PONG.
        """
        self.send(f"PING :{token}")
        return self.collect_until(rf"PONG \S+ :{re.escape(token)}$")[:-1]

    def expect_closed(self, timeout: float = DEFAULT_WAIT) -> list[str]:
        """Read until the server closes the connection; return the lines read meanwhile."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while self.read_line(deadline) is not None:
            pass
        return self.seen[start:]

    def register(self, nick: str, user: str = "tester", realname: str = "Test User") -> None:
        """Register and wait for the end of the automatic join's NAMES."""
        self.nick = nick
        self.send(f"NICK {nick}", f"USER {user} 0 * :{realname}")
        self.expect(r" 366 ")

    def close(self) -> None:
        self.sock.close()
