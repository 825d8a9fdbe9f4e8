"""Network I/O: one thread reads the server, another writes to it; the UI only queues.

``NetworkThread`` connects (again and again, with capped, jittered backoff, until stopped),
reads bytes, frames them into lines with ``LineFramer``, parses each with ``parse_message``
and puts a small frozen event on the bounded event queue for the UI loop (waiting while
the UI is behind). It never touches the screen or the chat state. A registration that does
not end in a welcome (001) within ``REGISTRATION_TIMEOUT`` of our NICK ends the connection,
and the usual reconnection follows.

``Sender`` is what the UI thread calls to send a line: it checks the line (``encode_line``
refuses CR/LF/NUL and caps the length), queues it and returns at once. Its writer thread
owns the socket's writes and paces them (a token bucket: a burst, then a steady rate, so a
pasted screenful does not trip the server's flood control); PONG and QUIT skip the pacing.
A server that stops reading only fills the queue: past ``SEND_QUEUE_BYTES`` (a paste that
large does the same) the connection is ended with a sentence that says so, never the UI
thread blocked on a socket.

A ``Connection`` is a connected socket, plain or with TLS (``tls.TlsStream``) on it; the
rest of the module reads and writes through it and does not care which. With TLS, every
reconnection verifies the certificate again, and never falls back to plain text.
``read_messages`` (bytes in, messages out) is the pure part of reading, tested on its own.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import queue
import random
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from curses_client.irc import (
    LINE_TOO_LONG,
    LineFramer,
    Message,
    TokenBucket,
    decode_line,
    encode_line,
    parse_message,
)
from curses_client.tls import TlsStream, describe_tls_error

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
RECV_BYTES = 16384
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 15.0
RETRY_JITTER = 0.25  # each wait is up to this fraction shorter, so clients do not return in step
REGISTRATION_TIMEOUT = 30.0  # from our NICK to the server's welcome
POLL_SECONDS = 1.0  # how often a waiting thread looks again at a deadline or at stop()
EVENT_QUEUE_LIMIT = 2000  # events the UI may be behind before the reader waits for it
EVENTS_PER_PASS = 500  # events the UI takes before it reads keys and draws again
SEND_QUEUE_BYTES = 8 * 1024 * 1024  # waiting to be written: past this, the server is not reading
SEND_BURST = 10  # lines written at once...
SEND_RATE = 2.0  # ...and per second after that (RFC 1459's 2 s a line, with a burst)
UNPACED_COMMANDS = ("PONG", "QUIT")  # answers and goodbyes are not held behind a paste
SECRET_COMMANDS = ("PASS", "AUTHENTICATE", "OPER")  # logged by name only
WELCOME = "001"


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
    """A connected socket, with TLS on it or not: the reader thread reads, the writer writes."""

    def __init__(self, sock: socket.socket, tls: TlsStream | None = None) -> None:
        self.sock = sock
        self.tls = tls

    def recv(self) -> bytes | None:
        """Blocks for the next plaintext (maybe b"" while a TLS record is incomplete); None at the end."""
        data = self.sock.recv(RECV_BYTES)
        if not data:
            return None
        return data if self.tls is None else self.tls.receive(data)

    def wait_readable(self, timeout: float) -> bool:
        """True once there is something to read (TLS keeps no decrypted bytes back)."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def send(self, data: bytes) -> None:
        if self.tls is not None:
            self.tls.send(data)  # TlsStream has its own lock: the reader may answer a key update
            return
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
        log.debug("<- %r", line)
        try:
            messages.append(parse_message(decode_line(line)))
        except ValueError:
            log.info("unparsable line from the server: %r", line[:80])
    return messages


class Wakeup:
    """A self-pipe: another thread ``ring``s it, the UI ``wait``s on it and the terminal together.

    So a line from the server is drawn as soon as it arrives, not after the key-read timeout,
    and an idle client still sleeps in ``select``. POSIX only: Windows' ``select`` takes
    sockets, not pipes or the console.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._rung = False  # a byte is (about to be) in the pipe: one is enough

    def ring(self) -> None:
        if self._rung:
            return
        self._rung = True
        try:
            os.write(self._write_fd, b"!")
        except BlockingIOError:  # the pipe is full of earlier rings: the UI wakes all the same
            pass

    def wait(self, fd: int, seconds: float) -> bool:
        """Sleep until ``fd`` is readable, a ring, or ``seconds``; True if ``fd`` is readable.

        A ring is used up here: the pipe is read empty first and the flag cleared after, so
        the flag is never left set over an empty pipe (which would silence every later ring).
        A ring that comes in between writes nothing; the event it announces is drained after
        this returns all the same.
        """
        ready = select.select([fd, self._read_fd], [], [], seconds)[0]
        if self._read_fd in ready:
            try:
                while os.read(self._read_fd, 4096):
                    pass
            except BlockingIOError:  # empty: all rings read
                pass
            self._rung = False
        return fd in ready


class EventQueue(queue.Queue[Event]):
    """The bounded queue from the network thread to the UI; each put rings ``wakeup``
    (None on Windows: the UI then looks at the queue after each key-read timeout)."""

    def __init__(self, maxsize: int = EVENT_QUEUE_LIMIT) -> None:
        super().__init__(maxsize)
        self.wakeup = Wakeup() if sys.platform != "win32" else None

    def _put(self, item: Event) -> None:  # called by put() under the queue's lock
        super()._put(item)
        if self.wakeup is not None:
            self.wakeup.ring()


def drain(events: queue.Queue[Event], limit: int = EVENTS_PER_PASS) -> Iterator[Event]:
    """The events waiting now, at most ``limit``: the UI then reads keys and draws again."""
    for _ in range(limit):
        try:
            yield events.get_nowait()
        except queue.Empty:
            return


_FINISH = b""  # in the send queue: "shut our side for writing" (after QUIT)


class Registration:
    """When our NICK went out and whether the welcome came: the registration deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._welcomed = False

    def nick_sent(self, now: float) -> None:
        with self._lock:
            if not self._welcomed:
                self._deadline = now + REGISTRATION_TIMEOUT

    def welcomed(self) -> None:
        with self._lock:
            self._welcomed, self._deadline = True, None

    def remaining(self, now: float) -> float | None:
        """Seconds left to register (infinite before our NICK); None once welcomed.

        Until then the reader polls, since the NICK that starts the clock is sent by
        another thread while the reader may already be waiting for data.
        """
        with self._lock:
            if self._welcomed:
                return None
            return math.inf if self._deadline is None else self._deadline - now


def loggable(data: bytes) -> str:
    """A line we send, as the debug log shows it: a password's line by its command only.

    >>> loggable(b"PASS hunter2\\r\\n"), loggable(b"PRIVMSG #a :hi\\r\\n")
    ('PASS (hidden)', "b'PRIVMSG #a :hi'")
    """
    command = data.split(b" ", 1)[0].decode("ascii", "replace").upper()
    if command in SECRET_COMMANDS:
        return f"{command} (hidden)"
    return repr(data.rstrip(b"\r\n"))


class Sender:
    """Queues whole lines for the current connection; its writer thread writes them in order.

    ``send`` never blocks: the UI thread calls it. The queue is emptied when the connection
    changes (lines belong to the session they were made for).
    """

    def __init__(self, burst: int = SEND_BURST, rate: float = SEND_RATE, limit: int = SEND_QUEUE_BYTES) -> None:
        self._ready = threading.Condition()  # guards everything below; notified on change
        self._connection: Connection | None = None
        self._registration = Registration()
        self._queue: collections.deque[tuple[bytes, bool]] = collections.deque()  # (data, paced)
        self._queued = 0  # bytes in _queue
        self._limit = limit
        self._burst, self._rate = burst, rate
        self._failure: str | None = None  # why this Sender ended the connection
        self._writer: threading.Thread | None = None

    def attach(self, connection: Connection | None) -> Registration:
        """Lines from now on go to ``connection`` (None: nowhere); what was queued is dropped."""
        with self._ready:
            if self._queue:
                log.info("dropped %d unsent lines with the old connection", len(self._queue))
            self._connection = connection
            self._queue.clear()
            self._queued = 0
            self._registration = Registration()
            self._failure = None
            if connection is not None and self._writer is None:
                self._writer = threading.Thread(target=self._write_forever, name="writer", daemon=True)
                self._writer.start()
            self._ready.notify_all()
            return self._registration

    def send(self, line: str) -> bool:
        """Queue one IRC line (no CRLF); False if there is no connection or no room for it."""
        data = encode_line(line)
        command = line.split(" ", 1)[0].upper()
        with self._ready:
            if self._connection is None:
                log.info("not connected; dropped a %s line", command[:20])  # never the text: it may be PASS
                return False
            if self._failure is not None:
                return False
            if command == "QUIT":  # leaving: what still waits would only delay the goodbye
                self._queue.clear()
                self._queued = 0
            if self._queued + len(data) > self._limit:
                self._fail(f"{self._queued // 1024} KB waiting to be sent: the server is not taking our lines"
                           " as fast as they come (it stopped reading, or a paste is too large)")
                return False
            if command == "NICK":
                self._registration.nick_sent(time.monotonic())
            if command in UNPACED_COMMANDS:
                self._queue.appendleft((data, False))
            else:
                self._queue.append((data, True))
            self._queued += len(data)
            self._ready.notify_all()
        return True

    def finish_writing(self) -> None:
        """Tell the server we are done (after QUIT, once it is written); it then closes its side."""
        with self._ready:
            if self._connection is not None:
                self._queue.append((_FINISH, False))
                self._ready.notify_all()

    def take_failure(self) -> str | None:
        """Why the Sender ended the connection (its queue overflowed), once; else None."""
        with self._ready:
            failure, self._failure = self._failure, None
            return failure

    def _fail(self, reason: str) -> None:
        """With _ready held: drop the queue and end the connection; the reader reports ``reason``."""
        log.info("ending the connection: %s", reason)
        self._failure = reason
        self._queue.clear()
        self._queued = 0
        if self._connection is not None:
            try:
                self._connection.shutdown()
            except OSError as error:  # already gone: the reader is ending anyway
                log.debug("shutdown: %s", describe_error(error))

    def _write_forever(self) -> None:
        bucket = TokenBucket(self._burst, self._rate, time.monotonic())
        due: float | None = None  # when the paced line at the head may go (its token is spent)
        while True:
            with self._ready:
                while True:
                    if self._connection is not None and self._queue:
                        data, paced = self._queue[0]
                        if not paced:
                            break
                        now = time.monotonic()
                        if due is None:
                            due = now + bucket.delay(now)
                        if now >= due:
                            due = None
                            break
                        self._ready.wait(due - now)  # a QUIT or PONG queued meanwhile wakes this
                    else:
                        self._ready.wait()
                self._queue.popleft()
                self._queued -= len(data)
                connection = self._connection
            try:  # outside the lock: a server that does not read blocks only this thread
                if not data:  # _FINISH
                    log.debug("-> (end of our side)")
                    connection.finish_writing()
                else:
                    log.debug("-> %s", loggable(data))
                    connection.send(data)
            except OSError as error:  # the reader thread sees the same failure and reports it
                log.info("send failed: %s", describe_error(error))


class NetworkThread(threading.Thread):
    """Connects, reads and reconnects until ``stop``; reports everything as queue events.

    ``pause`` holds reconnection back (while the user types a password) until ``resume``,
    which connects again at once; ``retry_now`` cuts a wait for the next attempt short.
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
        self._now = False  # resume() or retry_now() asked for a connection without waiting
        self._waiting = False  # between attempts: what retry_now() cuts short

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

    def retry_now(self) -> None:
        """Waiting to reconnect: try at once (a connection that is up is left alone)."""
        with self._wake:
            if self._waiting:
                self._now = True
                self._wake.notify_all()

    def _emit(self, event: Event) -> None:
        """Queue an event for the UI, waiting while it is behind, unless we are stopping."""
        while not self._stopping.is_set():
            try:
                self._events.put(event, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue  # the UI is busy (or has gone: then stop() ends this wait)
        log.debug("stopping: dropped a %s event", type(event).__name__)

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
            self._emit(Disconnected("internal error in the network thread (see the log)"))
        finally:
            try:  # nobody may be reading any more: never wait for room here
                self._events.put_nowait(Stopped())
            except queue.Full:
                log.debug("event queue full; the UI learns of the stop from its own quit")

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
                        self._emit(Refused(describe_error(error)))
                    attempt += 1
                    self._wait(delay, attempt)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
            delay, attempt = self._first_retry_delay, 0
            with self._wake:
                self._now = False  # whatever resume() asked for, this connection is it
            reason = self._serve(connection)
            self._emit(Disconnected(reason))
            if not self._stopping.is_set():
                attempt += 1
                self._wait(delay, attempt)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _wait(self, delay: float, attempt: int) -> None:
        delay *= 1 - random.uniform(0, RETRY_JITTER)
        if not self._paused and not self._now:
            self._emit(Retrying(time.monotonic() + delay, attempt))  # not under _wake: may wait
        with self._wake:
            self._waiting = True
            if not self._paused and not self._now:
                log.info("reconnecting in %.1f s (attempt %d)", delay, attempt)
                self._wake.wait_for(lambda: self._now or self._paused or self._stopping.is_set(), delay)
            self._wake.wait_for(lambda: not self._paused or self._stopping.is_set())
            self._now = self._waiting = False

    def _serve(self, connection: Connection) -> str:
        """Read one connection until it ends; return why it ended."""
        with self._connection_lock:
            self._connection = connection
        if self._stopping.is_set():  # stop() came before the connection was published
            connection.close()
            return "stopped"
        registration = self._sender.attach(connection)
        log.info("connected to %s:%s%s", self.host, self.port, " with TLS" if connection.tls is not None else "")
        self._emit(Connected())
        framer = LineFramer()
        reason = "the server closed the connection"
        try:
            while True:
                remaining = registration.remaining(time.monotonic())
                if remaining is not None and remaining <= 0:
                    reason = f"the server did not complete our registration within {REGISTRATION_TIMEOUT:.0f} s"
                    break
                if remaining is not None and not connection.wait_readable(min(remaining, POLL_SECONDS)):
                    continue
                data = connection.recv()
                if data is None:
                    break
                for message in read_messages(framer, data):
                    if message.command == WELCOME:
                        registration.welcomed()
                    self._emit(Received(message))
        except OSError as error:
            reason = describe_error(error)
        finally:
            reason = self._sender.take_failure() or reason
            self._sender.attach(None)
            with self._connection_lock:
                self._connection = None
            connection.close()
        reason = "closed by the client" if self._stopping.is_set() else reason
        log.info("disconnected: %s", reason)
        return reason
