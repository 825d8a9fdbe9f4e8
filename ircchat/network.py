"""The socket layer: a reader thread per connection, one ``OutputPump`` thread that does every
write (so a slow reader never blocks anyone), a housekeeping thread for pings and registration
timeouts, and ``ChatServer`` tying them together.
"""

from __future__ import annotations

import collections
import gc
import ipaddress
import os
import select
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable

try:  # POSIX; only the server's slow-reader check uses them, and the client runs on Windows too
    import fcntl
    import termios
except ImportError:
    fcntl = termios = None

from ircchat.cluster import ClusterBus
from ircchat.handlers import dispatch, line_from
from ircchat.history import HistoryStore
from ircchat.logs import log
from ircchat.numerics import ERR_INPUTTOOLONG
from ircchat.protocol import (
    LINE_TOO_LONG,
    LineFramer,
    LineTooLong,
    TokenBucket,
    decode_line,
    encode_line,
    format_line,
    parse_message,
)
from ircchat.roomlog import RoomCursor, RoomLog
from ircchat.state import (
    Hub,
    ServerConfig,
    User,
    cloak_host,
    liveness_actions,
)
from ircchat.tlsbuffer import TlsBuffer

RECV_BYTES = 16384
CLOSE_GRACE = 2.0  # seconds a closing connection gets to flush its last lines
LINGER = 1.0  # seconds a connection shut for writing is read from, waiting for the peer to close
# Sends never wait for a slow reader. On platforms without MSG_DONTWAIT (Windows) sends
# block, so there a stalled reader can hold up the pump; the server is meant for POSIX hosts.
SEND_FLAGS = getattr(socket, "MSG_DONTWAIT", 0)
FLUSHED, BLOCKED = "flushed", "blocked"  # Outbox.flush
PASS_SLICE = 128  # followers a room pass serves before it lets waiting replies through
END_OF_LOG = sys.maxsize  # the tag of a last line that goes after the room line in flight
# TCP states (Linux tcp_states.h) in which the peer has not closed its side yet.
_PEER_OPEN_STATES = (1, 4, 5)  # ESTABLISHED, FIN_WAIT1, FIN_WAIT2


def _unsent_bytes(sock: socket.socket) -> int | None:
    """Bytes the kernel holds for ``sock`` not yet acknowledged by the peer (Linux), else None."""
    if fcntl is None or not hasattr(termios, "TIOCOUTQ"):
        return None
    try:
        return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"), sys.byteorder)
    except OSError:  # closed meanwhile
        return None


class Outbox:
    """One client's output, in order: the room log it follows, with its own lines in between.

    A line for this client alone is queued with a tag, the followed log's offset when it was
    queued: the pump sends the room's bytes up to the tag, then the line. An int in place of
    a line skips the client's own message in the log (no echo). Any thread may ``put``; the
    hub calls ``follow``, ``unfollow`` and ``append_own`` under ``Hub.lock``; only the pump
    sends and closes. ``_lock`` guards the queue, its count and the TLS session, and is never
    held during a system call. A TLS outbox never follows a log: its lines are encrypted as
    they are queued, each record in the order made.
    """

    def __init__(self, sock: socket.socket, config: ServerConfig, wake: Callable[[Outbox], None],
                 abort: Callable[[str, bool], None], tls: TlsBuffer | None = None) -> None:
        self.sock = sock
        self.tls = tls
        self._sendq = config.sendq
        self._wake = wake  # tells the pump this outbox has lines of its own
        self._abort = abort  # drops the connection (reason, discard its output)
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[int, bytes | int]] = collections.deque()
        self._queued = 0  # bytes of the lines in _queue: what --sendq limits
        self._pending = b""  # pump only: lines taken from _queue, sent up to _done
        self._done = 0
        self.cursor: RoomCursor | None = None  # set once, by follow
        self._scheduled = False  # the pump was told of lines in _queue
        self._closing = False  # the last line is queued; later ones are dropped
        self._cut = False  # drop the backlog after the line in flight (pump acts on it)
        self.closed = False
        self.blocked = False  # pump only: waiting in the selector for room in the socket
        self.progress = time.monotonic()  # when the client last took bytes (pump, housekeeper)
        self._kernel_unsent = 0  # housekeeper only: _unsent_bytes at its last look

    # -- any thread -----------------------------------------------------------------------

    def put(self, data: bytes) -> None:
        """Queue a line for this client alone (User.deliver); never blocks."""
        with self._lock:
            if self._closing or self.closed:
                log.debug("dropped a line for a closing connection")
                return
            if self.tls is not None:
                try:
                    data = self.tls.wrap(data)
                except ssl.SSLError as error:  # e.g. a timeout's ERROR before the handshake
                    log.debug("dropped a line before the TLS handshake: %s", error)
                    return
            overflow = self._queued + len(data) > self._sendq
            if not overflow:
                self._queue.append((self._tag(), data))
                self._queued += len(data)
                wake, self._scheduled = not self._scheduled, True
        if overflow:
            self._abort("SendQ exceeded", True)
        elif wake:
            self._wake(self)

    def kick(self) -> None:
        """Have the pump look at this outbox (after it stopped following its log)."""
        with self._lock:
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self._wake(self)

    def finish(self, line: bytes, discard: bool) -> None:
        """Queue the last line; with ``discard``, in place of everything still unsent (but
        after the line in flight, so that the client's stream stays whole)."""
        with self._lock:
            if self._closing or self.closed:
                return
            self._closing = True
            if self.tls is not None:
                try:
                    line = self.tls.wrap(line)
                except ssl.SSLError as error:
                    log.debug("no last line before the TLS handshake: %s", error)
                    line = b""
            if discard:
                self._queue.clear()
                self._queued = 0
                self._cut = True
            if line:
                self._queue.append((END_OF_LOG if discard else self._tag(), line))
            wake, self._scheduled = not self._scheduled, True
        if wake:
            self._wake(self)

    def tls_receive(self, data: bytes) -> bytes | None:
        """Ciphertext from the socket to plaintext (b"" while a record is incomplete)."""
        with self._lock:
            plaintext, reply = self.tls.receive(data)
            if reply and not (self._closing or self.closed):
                self._queue.append((0, reply))  # handshake bytes are tiny: not held to SendQ
                wake, self._scheduled = not self._scheduled, True
            else:
                wake = False
        if wake:
            self._wake(self)
        return plaintext

    def _tag(self) -> int:
        """The offset in the followed log a line queued now must follow (``_lock`` held)."""
        return 0 if self.cursor is None else self.cursor.limit()

    # -- the hub, under Hub.lock ----------------------------------------------------------

    def follow(self, log_: RoomLog) -> None:
        with self._lock:
            self.cursor = RoomCursor(log_)

    def unfollow(self) -> None:
        """Stop reading the log at its current end; lines after it are not for this client."""
        with self._lock:
            self.cursor.stop = self.cursor.log.end

    def append_own(self, log_: RoomLog, data: bytes) -> None:
        """Append this client's own message to the log it follows, to be skipped, not echoed."""
        with self._lock:  # no tag may be taken between the append and the skip
            # The skip is queued before the log grows: the pump, reading without our lock,
            # must never see the line in the log before it sees the skip.
            self._queue.append((log_.end, len(data)))
            log_.append(data)

    # -- the pump -------------------------------------------------------------------------

    def flush(self) -> str:
        """Send what is due, in order, until nothing is left (FLUSHED) or the socket is full
        (BLOCKED): room bytes straight from the log, one slice per ``send``."""
        if self.closed:
            return FLUSHED
        if self._cut:
            self._cut_backlog()
        while True:
            room = not self._pending
            if room:
                data = self._room_chunk()
                if data is None:
                    if not self._take():
                        return FLUSHED
                    continue
            else:
                data = memoryview(self._pending)[self._done:]
            try:
                sent = self.sock.send(data, SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self._fail(f"Write error: {error.strerror or error}")
                return FLUSHED
            if sent:
                self.progress = time.monotonic()
                if room:
                    self.cursor.pos += sent
                else:
                    self._done += sent
                    if self._done == len(self._pending):
                        self._pending, self._done = b"", 0
            if sent < len(data):
                return BLOCKED
            if room and not self._queue and not self._scheduled and self.cursor.pos >= self.cursor.limit():
                # Caught up, the common case: done without another look (and the lock).
                # A line queued meanwhile finds _scheduled unset and tells the pump itself.
                return FLUSHED

    def _room_chunk(self) -> memoryview | None:
        cursor = self.cursor
        if cursor is None or cursor.seg is None:
            return None
        limit = cursor.limit()  # before the queue: a line queued after this has a later tag
        queue = self._queue
        if queue and queue[0][0] < limit:
            limit = queue[0][0]
        return cursor.chunk(limit)

    @staticmethod
    def _room_due(cursor: RoomCursor | None, tag: int) -> bool:
        """Whether room bytes must go before a line tagged ``tag``."""
        if cursor is None or cursor.seg is None:
            return False
        stop = cursor.stop
        return cursor.pos < (tag if stop is None or tag < stop else stop)

    def _take(self) -> bool:
        """Move the lines now due to ``_pending``; False (and unscheduled) if nothing is left."""
        with self._lock:
            queue, cursor, lines, skipped = self._queue, self.cursor, [], False
            while queue and not self._room_due(cursor, queue[0][0]):
                item = queue.popleft()[1]
                if type(item) is int:
                    if cursor.seg is not None:
                        cursor.skip(item)  # our own message
                    skipped = True
                else:
                    lines.append(item)
                    self._queued -= len(item)
            if lines:
                self._pending = lines[0] if len(lines) == 1 else b"".join(lines)
                return True
            if queue or skipped:
                return True  # room bytes come first (or now, past our own line)
            self._scheduled = False
            return False

    def _cut_backlog(self) -> None:
        """Keep only the rest of the line in flight: a last line follows it (``finish``)."""
        self._cut = False
        if self._pending and self.tls is None:  # TLS records cannot be cut
            end = self._pending.find(b"\n", self._done)
            if end >= 0:
                self._pending = self._pending[:end + 1]
        cursor = self.cursor
        if cursor is not None and cursor.seg is not None:
            # Pending lines always follow whole room lines, so then the room is at a boundary.
            cursor.stop = cursor.pos if self._pending else cursor.line_end()

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._closing = True
            self._queue.clear()
            self._queued = 0
        self._pending, self._done = b"", 0
        if self.cursor is not None:
            self.cursor.seg = None
        self._abort(reason, True)

    def evict(self, reason: str) -> None:
        """Drop a follower too far behind its room, letting go of its backlog at once."""
        self.cursor.seg = None
        self._abort(reason, True)

    def lag(self, end: int) -> int:
        """How far behind offset ``end`` of its log this follower is; 0 once it has let go."""
        cursor = self.cursor
        return 0 if cursor.seg is None else end - cursor.pos

    def has_output(self) -> bool:
        return bool(self._pending or self._queue) or self._room_due(self.cursor, END_OF_LOG)

    def shut_write(self) -> bool:
        """Send FIN after the last line; False if the socket is gone already."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            return True
        except OSError as error:
            log.debug("shutdown for writing: %s", error)
            return False

    def drain_input(self) -> bool:
        """Read and drop what the peer sent (closing with unread input would reset the
        connection and could destroy our last line); True once the peer has closed too."""
        try:
            while self.sock.recv(RECV_BYTES, SEND_FLAGS):
                pass
        except BlockingIOError:
            pass  # nothing more for now
        except OSError:
            return True  # reset: nothing left to wait for
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None:
            return False  # no way to tell: the linger deadline decides
        try:
            return self.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0] not in _PEER_OPEN_STATES
        except OSError:
            return True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._queue.clear()
            self._queued = 0
            # A closed connection is only freed by the cyclic GC (it and its User refer to
            # each other), which may take thousands of connections to come round: drop the
            # TLS session, by far its largest part, now. Nothing encrypts once closed is set,
            # and nothing decrypts: the pump closes only after the reader's _finish.
            self.tls = None
        self._pending = b""
        if self.cursor is not None:
            self.cursor.seg = None
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected: closing is all that is left to do
        self.sock.close()

    # -- the housekeeper ------------------------------------------------------------------

    def stalled(self, now: float, timeout: float) -> bool:
        """Whether the client has had output waiting and taken none of it for ``timeout`` s.

        A slow reader takes bytes from the kernel long before the socket has room enough to
        wake the pump, so the kernel's own count of unsent bytes counts as progress too.
        """
        if not self.blocked:
            return False
        unsent = _unsent_bytes(self.sock)
        if unsent is not None:
            if unsent < self._kernel_unsent:
                self.progress = now
            self._kernel_unsent = unsent
        return now - self.progress > timeout


class Connection:
    """One client's reader thread: ``serve`` reads, applies flood control, dispatches, and
    tears down; what the client is sent goes through its ``outbox``.

    ``_lock`` guards ``kill_reason`` and the kill latch.
    """

    def __init__(self, server: ChatServer, sock: socket.socket, address: tuple,
                 tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.sock = sock
        session = TlsBuffer(tls, server_side=True) if tls is not None else None
        self.outbox = Outbox(sock, server.config, server.pump.schedule, self.abort, session)
        self.user = User(host=cloak_host(server.config.cloak_secret, address[0]), address=address[0],
                         deliver=self.outbox.put, disconnect=self.abort,
                         outbox=self.outbox if session is None else None)
        self._lock = threading.Lock()
        # Released by abort(), ending a flood-control wait early: a held Lock is a one-shot
        # event at a fraction of threading.Event's size, which matters at thousands of clients.
        self._kill_latch = threading.Lock()
        self._kill_latch.acquire()
        # Waiting for data before handing recv() a buffer: an idle reader then holds none.
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(sock, select.POLLIN)
        self.kill_reason: str | None = None  # why the server is dropping this connection
        self._discard = False  # drop unsent output in favour of the ERROR line

    def abort(self, reason: str, discard: bool = False) -> None:
        """Drop this connection: wake its reader thread, which then tears it down."""
        with self._lock:
            if self.kill_reason is None:
                self.kill_reason = reason
            self._discard |= discard
            if self._kill_latch.locked():
                self._kill_latch.release()
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError as error:  # the peer may be gone, or the pump closed the socket
            log.debug("shutdown of %s: %s", self.user.address, error)

    def serve(self) -> None:
        user, framer = self.user, LineFramer()
        config = self.server.config
        bucket = TokenBucket(config.flood_burst, config.flood_rate, time.monotonic())
        eof_reason = "Connection closed"
        try:
            while user.quit_reason is None and self.kill_reason is None:
                if self._poller is not None:
                    self._poller.poll()
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    break
                if self.outbox.tls is not None:
                    data = self.outbox.tls_receive(data)
                    if data is None:
                        break  # the peer closed the TLS session
                    if not data:
                        continue  # handshake, or part of a record: no plaintext yet
                user.last_seen, user.ping_sent = time.monotonic(), None
                blank_lines = framer.blank_lines
                lines = framer.feed(data)
                user.flood_debt += framer.blank_lines - blank_lines  # a blank line is a line
                if not lines and user.flood_debt and self._pace(bucket, 0):
                    break
                for line in lines:
                    if self._pace(bucket, 1):
                        break
                    self._handle(line)
                    if user.quit_reason is not None:
                        break
                self._wait_while_room_full(config.room_backlog)  # once a read: at most 16 KB over
        except ssl.SSLError as error:
            eof_reason = f"TLS error: {error.reason or error}"
        except OSError as error:
            eof_reason = f"Read error: {error.strerror or error}"
        finally:
            self._finish(user.quit_reason or self.kill_reason or eof_reason)

    def _wait_while_room_full(self, cap: int) -> None:
        """Hold this sender back while its room's log is over the cap, until the pump has
        passed over it (dropping the laggards): memory stays bounded however fast it sends."""
        cursor = self.outbox.cursor
        if cursor is None or cursor.stop is not None:
            return
        room_log = cursor.log
        while room_log.end - room_log.floor > cap and self.kill_reason is None:
            self._kill_latch.acquire(timeout=0.002)  # the pump sets no event: poll, but wake on abort

    def _pace(self, bucket: TokenBucket, lines: int) -> bool:
        """Wait before the next line: flood control charged ``lines`` and what earlier commands
        cost, and any password back-off. True if the connection was dropped meanwhile.

        An eager sender waits here, in its own thread, so its socket fills up and TCP slows it
        down; nothing is dropped, nobody else waits.
        """
        cost, self.user.flood_debt = lines + self.user.flood_debt, 0.0
        wait, self.user.hold = self.user.hold, 0.0  # the password back-off applies regardless
        if self.server.config.flood_rate > 0:
            wait = max(wait, bucket.delay(time.monotonic(), cost))
        return bool(wait) and self._kill_latch.acquire(timeout=wait)

    def _handle(self, line: bytes | LineTooLong) -> None:
        hub = self.server.hub
        if line is LINE_TOO_LONG:
            hub.reply(self.user, ERR_INPUTTOOLONG, "Input line was too long")
            return
        try:
            msg = parse_message(decode_line(line))
        except ValueError:
            return  # a line of spaces and tags only: nothing to answer
        try:
            dispatch(hub, self.user, msg)
        except Exception:  # a bug in one handler must not take the connection down
            log.exception("error handling %r from %s", msg.command, self.user.address)

    def _finish(self, reason: str) -> None:
        hub, user = self.server.hub, self.user
        if user.registered:
            hub.settle_history()  # its last lines go out before its QUIT
        hub.remove(user, line_from(user, "QUIT", reason) if user.registered else None)
        if user.registered:
            log.info("%s quit (%s)", user.nick, reason)
        else:
            log.info("connection from %s closed before registering (%s)", user.address, reason)
        line = encode_line(format_line("ERROR", f"Closing Link: {user.host} ({reason})"))
        with self._lock:
            discard = self._discard
        self.outbox.finish(line, discard)
        self.server.pump.close_when_flushed(self.outbox)
        self.server.forget(self)


class OutputPump(threading.Thread):
    """The one thread that writes to (and closes) client sockets.

    Each pass goes over the room logs that grew since the last pass and sends each follower
    one slice of the log from its own offset, so lines that piled up while the pump was busy
    go out together; then over the outboxes with lines of their own. An outbox whose socket
    is full waits in a selector for writability instead, so one stalled reader never holds
    up the rest; a follower more than ``room_backlog`` bytes behind its room is dropped.
    Closing is: last line, FIN, then the peer's input read and dropped until it closes too.
    """

    def __init__(self, hub_lock: threading.Lock, room_backlog: int) -> None:
        super().__init__(name="output-pump", daemon=True)
        self._hub_lock = hub_lock  # to take a log's followers
        self._room_backlog = room_backlog
        # Deques, so that queueing takes no lock.
        self._ready: collections.deque[Outbox] = collections.deque()
        self._logs: collections.deque[RoomLog] = collections.deque()
        self._lock = threading.Lock()  # guards the next four fields and the wake-up sockets
        self._closing: dict[Outbox, float] = {}  # outbox -> deadline to flush by
        self._sleeping = False  # set (under _lock) just before the pump may block in select
        self._stopping = False  # asked to finish: flush what is closing, then exit
        self._stopped = False  # exited: late connections are closed on the spot
        self._lingering: dict[Outbox, float] = {}  # shut for writing -> deadline; pump only
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ)

    def schedule(self, outbox: Outbox) -> None:
        """``outbox`` has lines of its own: send them on the next pass."""
        self._ready.append(outbox)
        self._wake_if_sleeping()

    def logs_grew(self, logs: list[RoomLog]) -> None:
        """These logs have new lines: pass over their followers on the next pass."""
        self._logs.extend(logs)
        self._wake_if_sleeping()

    def close_when_flushed(self, outbox: Outbox) -> None:
        """Send what ``outbox`` still has (for up to CLOSE_GRACE seconds), then close it."""
        with self._lock:
            stopped = self._stopped
            self._closing[outbox] = time.monotonic() + CLOSE_GRACE
        if stopped:  # a straggler after shutdown: no pump left to flush for it
            outbox.close()
            return
        self.schedule(outbox)

    def _wake_if_sleeping(self) -> None:
        # The pump sets _sleeping before it looks at its deques one last time, so either it
        # sees what was just queued or we see it asleep and wake it.
        if self._sleeping:
            with self._lock:
                if self._sleeping and not self._stopped:
                    self._sleeping = False
                    self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if not self._stopped:
                self._wake()

    def _wake(self) -> None:
        """Interrupt the pump's select; called with ``_lock`` held (never blocks)."""
        try:
            self._wake_out.send(b"\0")
        except BlockingIOError:
            pass  # the wake-up pipe is full: the pump is sure to wake anyway

    def run(self) -> None:
        while True:
            ready, logs = self._take(self._ready), self._take(self._logs)
            with self._lock:
                stopping = self._stopping
                deadlines = list(self._closing.values())
                self._sleeping = not (ready or logs)
            if not (ready or logs):  # the last look before sleeping (see _wake_if_sleeping)
                ready, logs = self._take(self._ready), self._take(self._logs)
            if stopping and not (deadlines or self._lingering or ready or logs):
                break
            timeout = 0 if ready or logs else self._select_timeout(deadlines, stopping)
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_in:
                    self._drain_wakeups()
                else:
                    self._selector.unregister(key.fileobj)
                    key.data.blocked = False
                    ready.append(key.data)
            if self._sleeping:
                with self._lock:
                    self._sleeping = False
            for room_log in dict.fromkeys(logs):
                self._pass(room_log)
            for outbox in ready:
                if not outbox.blocked:
                    self._flush(outbox)
            self._close_finished()
            if self._lingering:
                self._linger()
        with self._lock:
            self._stopped = True
            stragglers = list(self._closing)  # handed over after our last look
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()
        for outbox in stragglers:
            outbox.close()

    def _pass(self, room_log: RoomLog) -> None:
        """Send every follower of ``room_log`` what it has not had yet; drop the laggards."""
        with self._hub_lock:
            followers = list(room_log.followers)
            end = room_log.end
        cap, floor = self._room_backlog, end
        for count, outbox in enumerate(followers, 1):
            if not outbox.blocked:
                self._flush(outbox)
            if not count % PASS_SLICE and self._ready:
                # A pass over a big room takes milliseconds: let replies (a joiner's NAMES,
                # a PONG) through in between instead of after it.
                for waiting in self._take(self._ready):
                    if not waiting.blocked:
                        self._flush(waiting)
            lag = outbox.lag(end)
            if lag > cap:
                outbox.evict(f"Backlog exceeded: over {cap} bytes behind the room")
            elif end - lag < floor:
                floor = end - lag
        room_log.floor = floor  # senders waiting for the room to shrink look at it

    def _flush(self, outbox: Outbox) -> None:
        if outbox.flush() is BLOCKED:
            outbox.blocked = True
            self._selector.register(outbox.sock, selectors.EVENT_WRITE, outbox)

    @staticmethod
    def _take(items: collections.deque) -> list:
        taken = []
        try:
            while True:
                taken.append(items.popleft())
        except IndexError:
            return taken

    def _select_timeout(self, deadlines: list[float], stopping: bool) -> float | None:
        if self._lingering:
            deadlines = [*deadlines, time.monotonic() + 0.02]  # peers' closing is polled for
        if not deadlines:
            return 0 if stopping else None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except BlockingIOError:
            pass  # drained

    def _close_finished(self) -> None:
        now = time.monotonic()
        with self._lock:
            closing = list(self._closing.items())
        for outbox, deadline in closing:
            flushed = not outbox.has_output()
            if not flushed and now < deadline:
                continue  # still flushing its last lines
            if outbox.blocked:
                self._selector.unregister(outbox.sock)
                outbox.blocked = False
            with self._lock:
                del self._closing[outbox]
            if flushed and outbox.shut_write():
                self._lingering[outbox] = now + LINGER
            else:
                outbox.close()

    def _linger(self) -> None:
        now = time.monotonic()
        for outbox, deadline in list(self._lingering.items()):
            if outbox.drain_input() or now >= deadline:
                del self._lingering[outbox]
                outbox.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.setblocking(False)
    return listener


def _refuse(sock: socket.socket, host: str, reason: str, tls: ssl.SSLContext | None) -> None:
    """Close a connection we will not serve, telling a plain-text client why (best effort)."""
    if tls is None:  # a TLS client would need a handshake first; it just sees the close
        try:
            sock.send(f"ERROR :Closing Link: {host} ({reason})\r\n".encode(), SEND_FLAGS)
        except OSError as error:
            log.debug("could not tell %s why it was refused: %s", host, error)
    sock.close()


MEMORY_TRIM_INTERVAL = 1.0  # at least this many seconds between two malloc_trim calls


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS, Windows): then trimming is off."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            raise OSError("not glibc")
        import ctypes
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already runs on
    except (AttributeError, ValueError, OSError, ImportError) as error:
        log.debug("malloc_trim unavailable, freed heap is not handed back to the OS: %s", error)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class HeapTrimmer:
    """Gives the heap that ended connections freed back to the OS (glibc only; else a no-op).

    glibc gives reader threads malloc arenas of their own and keeps what is freed there for
    reuse, so after a burst of connections (TLS ones above all) RSS stayed near its peak.
    malloc_trim(0) returns the free pages of every arena (about 0.2 ms for a 50 MB heap). It
    takes each arena's lock in turn, so the housekeeper calls it only after connections have
    ended, at most every MEMORY_TRIM_INTERVAL. With this and Connection.close dropping the TLS
    session, 12,000 TLS connections, 400 at a time, leave RSS at 38-41 MB instead of 86-91 MB (the
    server starts at 27 MB; most of the rest is fragmentation in Python's own allocator):
    ``python bench/tls_churn.py`` measures it.
    """

    def __init__(self) -> None:
        self._trim = _glibc_malloc_trim()
        self._last_time = float("-inf")
        self._last_ended = 0

    def maybe_trim(self, ended: int, now: float, idle: bool = False) -> bool:
        """Trim if the count of ended connections grew since the last trim, and it is time.

        ``idle``: no connection is open. Closed connections are reference cycles that only a
        full GC pass frees, and that pass may be thousands of connections away; with nobody
        connected it is cheap (a few ms), so it is done first and its garbage trimmed too.
        """
        if self._trim is None or ended == self._last_ended or now - self._last_time < MEMORY_TRIM_INTERVAL:
            return False
        self._last_time, self._last_ended = now, ended
        if idle:
            gc.collect()
        self._trim(0)
        return True


class ChatServer:
    """Listens, starts a reader thread per connection, and runs the pump and housekeeping."""

    def __init__(self, config: ServerConfig, host: str = "127.0.0.1", port: int = 5555,
                 tls: ssl.SSLContext | None = None, tls_port: int = 6697,
                 history: HistoryStore | None = None, bus: ClusterBus | None = None) -> None:
        self.config = config
        self.hub = Hub(config, history=history, bus=bus)
        self.pump = OutputPump(self.hub.lock, config.room_backlog)
        self.hub.on_append = self.pump.logs_grew
        self.listener = _listen(host, port)
        self.tls_listener = _listen(host, tls_port) if tls is not None else None
        self._tls_context = tls
        self._connections: set[Connection] = set()
        self._per_host: collections.Counter[str] = collections.Counter()
        self._connections_changed = threading.Condition()  # guards _connections and _per_host
        self._stop = threading.Event()
        self._stop_in, self._stop_out = socket.socketpair()
        self._trimmer = HeapTrimmer()
        # Connections ended so far: written under _connections_changed, read without it by
        # the housekeeper (a stale count only puts a trim off by one tick).
        self._ended = 0
        self._threads = [
            threading.Thread(target=self._accept_loop, name="acceptor", daemon=True),
            threading.Thread(target=self._housekeeping_loop, name="housekeeper", daemon=True),
        ]

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    @property
    def tls_address(self) -> tuple[str, int] | None:
        return self.tls_listener.getsockname()[:2] if self.tls_listener else None

    def start(self) -> None:
        self.pump.start()
        for thread in self._threads:
            thread.start()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ, None)
            if self.tls_listener is not None:
                selector.register(self.tls_listener, selectors.EVENT_READ, self._tls_context)
            selector.register(self._stop_in, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._stop_in:
                        continue
                    try:
                        self._accept(key.fileobj, key.data)
                    except Exception:  # one connection's failure must never end accepting
                        log.exception("error accepting a connection")

    def _accept(self, listener: socket.socket, tls: ssl.SSLContext | None) -> None:
        try:
            sock, address = listener.accept()
        except BlockingIOError:
            return  # the client gave up before we got to it
        except OSError as error:  # e.g. out of file descriptors: pause instead of spinning
            log.error("accept failed: %s", error)
            self._stop.wait(0.5)
            return
        if self._stop.is_set():
            sock.close()  # shutting down: too late to serve anyone new
            return
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = address[0]
        conn = Connection(self, sock, address, tls)
        with self._connections_changed:
            refusal = self._refusal(host)
            if refusal is None:
                self._connections.add(conn)
                self._per_host[host] += 1
        if refusal is not None:
            log.warning("refused %s:%s: %s", host, address[1], refusal)
            _refuse(sock, host, refusal, tls)
            return
        self.hub.add(conn.user)
        log.info("connection from %s:%s%s", host, address[1], " (TLS)" if tls else "")
        try:
            threading.Thread(target=conn.serve, name=f"conn-{host}:{address[1]}", daemon=True).start()
        except (RuntimeError, MemoryError) as error:  # a thread or memory limit below --max-clients
            log.error("refused %s:%s: cannot start a thread for it (%s)", host, address[1], error)
            self.hub.remove(conn.user)
            self.forget(conn)
            _refuse(sock, host, "Server is out of resources, try again later", tls)

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused, if it is (``_connections_changed`` held)."""
        if len(self._connections) >= self.config.max_clients:
            return "Server is full"
        if self._per_host[host] >= self.config.max_per_ip and not ipaddress.ip_address(host).is_loopback:
            return "Too many connections from your address"
        return None

    def forget(self, conn: Connection) -> None:
        with self._connections_changed:
            self._connections.discard(conn)
            self._ended += 1
            address = conn.user.address
            self._per_host[address] -= 1
            if not self._per_host[address]:
                del self._per_host[address]
            self._connections_changed.notify_all()

    def _housekeeping_loop(self) -> None:
        config = self.config
        timeouts = (config.ping_interval, config.ping_timeout, config.register_timeout, config.sendq_timeout)
        tick = min(5.0, max(0.05, min(timeouts) / 4))
        ping = encode_line(format_line("PING", config.server_name))
        stalled = f"SendQ timeout: no progress for {config.sendq_timeout:g} seconds"
        while not self._stop.wait(tick):
            now = time.monotonic()
            for user, action in liveness_actions(self.hub, now):
                if action == "ping":
                    user.ping_sent = now
                    user.deliver(ping)
                else:
                    user.disconnect(action)
            with self._connections_changed:
                connections = list(self._connections)
            for conn in connections:
                if conn.outbox.stalled(now, config.sendq_timeout):
                    conn.abort(stalled, discard=True)
            self._trimmer.maybe_trim(self._ended, now, idle=not self._connections)

    def shutdown(self, timeout: float = CLOSE_GRACE) -> None:
        """Tell every client, close every socket and stop every thread, within ``timeout``."""
        if self._stop.is_set():
            return  # already shut down
        self._stop.set()
        self._stop_out.send(b"\0")
        for thread in self._threads:
            if thread.ident is not None:  # started (a signal may come before start())
                thread.join(timeout)
        self.listener.close()
        if self.tls_listener is not None:
            self.tls_listener.close()
        with self._connections_changed:
            connections = list(self._connections)
        for conn in connections:
            conn.abort("Server shutting down", discard=True)
        with self._connections_changed:
            self._connections_changed.wait_for(lambda: not self._connections, timeout)
        self.pump.stop()
        if self.pump.ident is not None:
            self.pump.join(timeout + LINGER)
        self._stop_in.close()
        self._stop_out.close()
