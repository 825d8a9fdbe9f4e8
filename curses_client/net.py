"""Network I/O: one thread reads the server, a lock-guarded sender writes to it.

``NetworkThread`` connects (again and again, with backoff, until stopped), reads bytes,
frames them into lines with ``LineFramer``, parses each with ``parse_message`` and puts a
small frozen event on the queue for the UI loop. It never touches the screen or the chat
state. ``Sender`` is what the UI thread calls to send a line; it refuses lines that are not
valid IRC (``encode_line`` caps the length) and never raises on a dead connection.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass

from chat_server import LINE_TOO_LONG, LineFramer, Message, decode_line, encode_line, parse_message

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
RECV_BYTES = 16384
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Received:
    message: Message


@dataclass(frozen=True)
class Disconnected:
    reason: str


@dataclass(frozen=True)
class Retrying:
    """The next connection attempt is due at ``due`` (time.monotonic())."""

    due: float
    attempt: int


@dataclass(frozen=True)
class Stopped:
    """The network thread has finished (after ``NetworkThread.stop``)."""


Event = Connected | Received | Disconnected | Retrying | Stopped


def open_connection(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connected TCP socket in blocking mode; raises OSError as socket.create_connection does."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def describe_error(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


class Sender:
    """Writes whole lines to the current socket, one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock

    def send(self, line: str) -> bool:
        """Send one IRC line (no CRLF); False if there is no connection to send it on."""
        data = encode_line(line)
        with self._lock:
            if self._sock is None:
                log.info("not connected; dropped %r", line[:80])
                return False
            try:
                self._sock.sendall(data)
            except OSError as error:  # the reader thread sees the same failure and reports it
                log.info("send failed: %s", describe_error(error))
                return False
        return True

    def finish_writing(self) -> None:
        """Tell the server we are done (after QUIT); it then closes its side."""
        with self._lock:
            if self._sock is None:
                return
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError as error:
                log.info("shutdown after QUIT: %s", describe_error(error))


class NetworkThread(threading.Thread):
    """Connects, reads and reconnects until ``stop``; reports everything as queue events."""

    def __init__(
        self,
        host: str,
        port: int,
        events: queue.Queue[Event],
        sender: Sender,
        first_socket: socket.socket | None = None,
        first_retry_delay: float = FIRST_RETRY_DELAY,
    ) -> None:
        super().__init__(name="network", daemon=True)
        self.host, self.port = host, port
        self._events = events
        self._sender = sender
        self._next_socket = first_socket
        self._first_retry_delay = first_retry_delay
        self._stopping = threading.Event()
        self._sock_lock = threading.Lock()  # guards _sock between run() and stop()
        self._sock: socket.socket | None = None

    def stop(self) -> None:
        """Stop reconnecting and wake the reader; safe from any thread, more than once."""
        self._stopping.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as error:  # already closed by the peer: the reader is ending anyway
                log.debug("shutdown on stop: %s", describe_error(error))

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # a bug here must not leave the UI waiting forever: report it
            log.exception("network thread failed")
            self._events.put(Disconnected("internal error in the network thread (see the log)"))
        finally:
            self._events.put(Stopped())

    def _run(self) -> None:
        delay, attempt = self._first_retry_delay, 0
        while not self._stopping.is_set():
            sock, self._next_socket = self._next_socket, None
            if sock is None:
                try:
                    sock = open_connection(self.host, self.port)
                except OSError as error:
                    log.info("connect to %s:%s failed: %s", self.host, self.port, describe_error(error))
                    attempt += 1
                    self._wait(delay, attempt)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
            delay, attempt = self._first_retry_delay, 0
            reason = self._serve(sock)
            self._events.put(Disconnected(reason))
            if not self._stopping.is_set():
                attempt += 1
                self._wait(delay, attempt)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _wait(self, delay: float, attempt: int) -> None:
        self._events.put(Retrying(time.monotonic() + delay, attempt))
        self._stopping.wait(delay)

    def _serve(self, sock: socket.socket) -> str:
        """Read one connection until it ends; return why it ended."""
        with self._sock_lock:
            self._sock = sock
        if self._stopping.is_set():  # stop() came before the socket was published
            sock.close()
            return "stopped"
        self._sender.attach(sock)
        self._events.put(Connected())
        framer = LineFramer()
        reason = "the server closed the connection"
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                for line in framer.feed(data):
                    if line is LINE_TOO_LONG:
                        log.info("skipped an overlong line from the server")
                        continue
                    try:
                        message = parse_message(decode_line(line))
                    except ValueError:
                        log.info("unparsable line from the server: %r", line[:80])
                        continue
                    self._events.put(Received(message))
        except OSError as error:
            reason = describe_error(error)
        finally:
            self._sender.attach(None)
            with self._sock_lock:
                self._sock = None
            sock.close()
        return "closed by the client" if self._stopping.is_set() else reason
