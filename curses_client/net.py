"""Network I/O: one thread reads the server, a lock-guarded sender writes to it.

``NetworkThread`` connects (again and again, with backoff, until stopped), reads bytes,
frames them into lines with ``LineFramer``, parses each with ``parse_message`` and puts a
small frozen event on the queue for the UI loop. It never touches the screen or the chat
state. ``Sender`` is what the UI thread calls to send a line; it refuses lines that are not
valid IRC (``encode_line`` caps the length) and never raises on a dead connection.

A ``Connection`` is a connected socket, plain or with TLS (``tls.TlsStream``) on it; the
rest of the module reads and writes through it and does not care which. With TLS, every
reconnection verifies the certificate again, and never falls back to plain text.
``read_messages`` (bytes in, messages out) is the pure part of reading, tested on its own.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from ircchat.protocol import LINE_TOO_LONG, LineFramer, Message, decode_line, encode_line, parse_message
from curses_client.tls import TlsStream, describe_tls_error

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
class Refused:
    """A reconnection found a certificate that does not verify; retrying goes on, over TLS."""

    reason: str


@dataclass(frozen=True)
class Stopped:
    """The network thread has finished (after ``NetworkThread.stop``)."""


Event = Connected | Received | Disconnected | Retrying | Refused | Stopped


class Connection:
    """A connected socket, with TLS on it or not; ``send`` may be called from any thread."""

    def __init__(self, sock: socket.socket, tls: TlsStream | None = None) -> None:
        self.sock = sock
        self.tls = tls
        self._write_lock = threading.Lock()  # whole lines, in order, from any thread

    def recv(self) -> bytes | None:
        """Blocks for the next plaintext (maybe b"" while a TLS record is incomplete); None at the end."""
        data = self.sock.recv(RECV_BYTES)
        if not data:
            return None
        return data if self.tls is None else self.tls.receive(data)

    def send(self, data: bytes) -> None:
        if self.tls is not None:
            self.tls.send(data)  # TlsStream has its own lock
            return
        with self._write_lock:
            self.sock.sendall(data)

    def finish_writing(self) -> None:
        if self.tls is not None:
            self.tls.close_notify()
        self.sock.shutdown(socket.SHUT_WR)

    def shutdown(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()


def open_connection(
    host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = CONNECT_TIMEOUT
) -> Connection:
    """Connect (and complete the TLS handshake); raises OSError, ssl.SSLError included."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = None
        if tls is not None:
            stream = TlsStream(sock, tls, host)
            stream.handshake()  # still under the connect timeout
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return Connection(sock, stream)


def describe_error(error: OSError) -> str:
    if isinstance(error, ssl.SSLError):
        return describe_tls_error(error)
    return error.strerror or str(error) or type(error).__name__


def read_messages(framer: LineFramer, data: bytes) -> list[Message]:
    """Bytes from the server in, parsed messages out: overlong and unparsable lines are skipped.

    >>> read_messages(LineFramer(), b"PING :a\\r\\n:no.command\\r\\n" + b"x" * 600 + b"\\n\\xff :b\\nNOT")
    [Message(command='PING', params=('a',), prefix=None, tags=()), Message(command='\\ufffd', params=('b',), prefix=None, tags=())]
    """
    messages = []
    for line in framer.feed(data):
        if line is LINE_TOO_LONG:
            log.info("skipped an overlong line from the server")
            continue
        try:
            messages.append(parse_message(decode_line(line)))
        except ValueError:
            log.info("unparsable line from the server: %r", line[:80])
    return messages


class Sender:
    """Writes whole lines to the current socket, one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def attach(self, connection: Connection | None) -> None:
        with self._lock:
            self._connection = connection

    def send(self, line: str) -> bool:
        """Send one IRC line (no CRLF); False if there is no connection to send it on."""
        data = encode_line(line)
        with self._lock:
            if self._connection is None:
                log.info("not connected; dropped a %s line", line.split(" ", 1)[0][:20])  # never the text: it may be PASS
                return False
            try:
                self._connection.send(data)
            except OSError as error:  # the reader thread sees the same failure and reports it
                log.info("send failed: %s", describe_error(error))
                return False
        return True

    def finish_writing(self) -> None:
        """Tell the server we are done (after QUIT); it then closes its side."""
        with self._lock:
            if self._connection is None:
                return
            try:
                self._connection.finish_writing()
            except OSError as error:
                log.info("shutdown after QUIT: %s", describe_error(error))


class NetworkThread(threading.Thread):
    """Connects, reads and reconnects until ``stop``; reports everything as queue events.

    ``pause`` holds reconnection back (while the user types a password) until ``resume``,
    which connects again at once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        events: queue.Queue[Event],
        sender: Sender,
        first_connection: Connection | None = None,
        first_retry_delay: float = FIRST_RETRY_DELAY,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(name="network", daemon=True)
        self.host, self.port = host, port
        self._events = events
        self._sender = sender
        self._next_connection = first_connection
        self._first_retry_delay = first_retry_delay
        self._tls = tls
        self._stopping = threading.Event()
        self._connection_lock = threading.Lock()  # guards _connection between run() and the UI thread
        self._connection: Connection | None = None
        self._wake = threading.Condition()  # guards _paused and _now; notified by stop and resume
        self._paused = False
        self._now = False  # resume() asked for a connection without waiting

    def stop(self) -> None:
        """Stop reconnecting and wake the reader; safe from any thread, more than once."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        self._end_connection()

    def pause(self) -> None:
        """After the current connection ends, wait for ``resume`` instead of reconnecting."""
        with self._wake:
            self._paused = True
            self._wake.notify_all()  # a retry already being waited for waits for resume instead

    def resume(self) -> None:
        """Connect again now: a connection still up is ended, a pending wait is cut short."""
        with self._wake:
            self._paused, self._now = False, True
            self._wake.notify_all()
        self._end_connection()

    def _end_connection(self) -> None:
        with self._connection_lock:
            connection = self._connection
        if connection is not None:
            try:
                connection.shutdown()
            except OSError as error:  # already closed by the peer: the reader is ending anyway
                log.debug("shutdown: %s", describe_error(error))

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
            connection, self._next_connection = self._next_connection, None
            if connection is None:
                try:
                    connection = open_connection(self.host, self.port, self._tls)
                except OSError as error:
                    log.info("connect to %s:%s failed: %s", self.host, self.port, describe_error(error))
                    if isinstance(error, ssl.SSLCertVerificationError):
                        self._events.put(Refused(describe_error(error)))
                    attempt += 1
                    self._wait(delay, attempt)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
            delay, attempt = self._first_retry_delay, 0
            with self._wake:
                self._now = False  # whatever resume() asked for, this connection is it
            reason = self._serve(connection)
            self._events.put(Disconnected(reason))
            if not self._stopping.is_set():
                attempt += 1
                self._wait(delay, attempt)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _wait(self, delay: float, attempt: int) -> None:
        with self._wake:
            if not self._paused and not self._now:
                self._events.put(Retrying(time.monotonic() + delay, attempt))
                self._wake.wait_for(lambda: self._now or self._paused or self._stopping.is_set(), delay)
            self._wake.wait_for(lambda: not self._paused or self._stopping.is_set())
            self._now = False

    def _serve(self, connection: Connection) -> str:
        """Read one connection until it ends; return why it ended."""
        with self._connection_lock:
            self._connection = connection
        if self._stopping.is_set():  # stop() came before the connection was published
            connection.close()
            return "stopped"
        self._sender.attach(connection)
        self._events.put(Connected())
        framer = LineFramer()
        reason = "the server closed the connection"
        try:
            while (data := connection.recv()) is not None:
                for message in read_messages(framer, data):
                    self._events.put(Received(message))
        except OSError as error:
            reason = describe_error(error)
        finally:
            self._sender.attach(None)
            with self._connection_lock:
                self._connection = None
            connection.close()
        return "closed by the client" if self._stopping.is_set() else reason
