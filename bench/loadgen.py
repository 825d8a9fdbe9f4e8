"""The load generator: worker processes, each driving many IRC clients with one epoll loop.

Map of this file:

1. Wire format of the bench's messages: ``message_text``, the marker that counts them in a
   received chunk, and the per-sender patterns that find their sequence numbers and send times.
2. ``Client``: one non-blocking socket with its read tail, write buffer and counters.
3. ``Worker``: the loop of one process. It owns clients ``idx % workers == worker_id`` and
   runs one phase per command it reads from its pipe: connect, idle, fanout, latency, close.
4. ``LoadGenerator``: the coordinator in the parent process; it starts the workers, sends each
   phase to all of them at once, times the phase and adds up what they report.

Clients 0..S-1 are the senders; every client, senders included, is a receiver. What a
receiver does with a chunk of complete lines must cost far less than what the server did to
send it, or the bench measures itself. So most receivers only *count*: one C-speed
``bytes.count`` of the bench marker over the whole chunk (and one of newlines, to notice any
other line). A sample of receivers is *checked*: for each sender, the sequence numbers found in
a chunk by a C-speed regex scan must continue exactly where the last chunk stopped. Loss and
duplication are caught everywhere (each receiver's count must end exactly at what it was
sent), reordering on the sample, disconnects everywhere.

During fanout the senders may run at most ``window`` messages, all senders together, ahead of
the *slowest* receiver anywhere: each worker publishes the least progress of its receivers
(messages received + messages sent by that client itself) in a shared array, and a sender
reads the minimum over all workers. A worker whose senders wait for the others rings no bell:
it polls with a short timeout (``SENDER_POLL``).
All clocks are ``time.monotonic_ns()``: one clock for the whole host, so a receiver in one
process can subtract a send time stamped in another.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import re
import resource
import select
import socket
import time
from array import array
from dataclasses import dataclass, field

SENDERS = 4
CHANNEL = "#chat"
RECV_BYTES = 1 << 16  # more costs an mmap per recv in glibc's malloc, and reads are smaller anyway
SWEEP_INTERVAL = 0.05  # seconds between reads of the non-probe receivers (latency phase)
LATENCY_PROBES = 64  # receivers at which latency is taken, spread evenly over the ids
# fan-out: receivers whose every sequence number is checked (the last ids, so one per worker).
# Checking costs about 3x counting per line: at N=10, 4 checked receivers doubled the
# generator's CPU per delivery against the relay (166 ns against 82 ns with none).
ORDER_SAMPLE = 2
# fan-out: messages in flight ahead of the slowest receiver, all senders together. Enough to
# keep the relay busy (96 left it idle, waiting); ngircd dropped no sender with windows up to
# 1,536 while the bench was built (what it has not read waits in the socket).
WINDOW = 1024
SENDER_POLL = 0.001  # seconds a worker whose senders wait for the slowest receiver sleeps
CONNECT_WAVE = 10  # clients connecting at once, over all workers (ngircd listens with backlog 10)
FILLER = "x" * 24  # makes a line about the size of a short chat message


# ---------------------------------------------------------------------------------------------
# 1. Wire format
# ---------------------------------------------------------------------------------------------


def message_text(sender: int, seq: int, sent_ns: int) -> str:
    """The text a sender puts in its PRIVMSG: ``s<id> <seq> <send time ns> <filler>``."""
    return f"s{sender} {seq} {sent_ns} {FILLER}"


MARKER = f" PRIVMSG {CHANNEL} :s".encode()  # once in every bench line, in no other line
SEQ_PATTERNS = [re.compile(rb" :s%d (\d+) " % s) for s in range(SENDERS)]
SEQ_TIME_PATTERNS = [re.compile(rb" :s%d (\d+) (\d+) " % s) for s in range(SENDERS)]


def raise_fd_limit(wanted: int = 65536) -> int:
    """Lift the soft open-file limit as far as the hard limit allows; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cpu_seconds() -> float:
    """This process's CPU time, to the nanosecond (os.times() counts 10 ms ticks: too coarse
    for phases that last a few of them)."""
    return time.process_time()


# ---------------------------------------------------------------------------------------------
# 2. One client
# ---------------------------------------------------------------------------------------------

CONNECTING, REGISTERING, JOINING, READY, DEAD = range(5)
NO_LAG = 1 << 62  # the progress of a client that holds no one back (dead)


class Client:
    __slots__ = (
        "idx", "pos", "nick", "sock", "state", "tail", "wbuf", "writing", "expect",
        "failure", "joined", "sent", "received", "next_send",
    )

    def __init__(self, idx: int, pos: int, nick: str) -> None:
        self.idx = idx  # global id; ids below SENDERS are the senders
        self.pos = pos  # index among this worker's clients
        self.nick = nick
        self.sock: socket.socket | None = None
        self.state = CONNECTING
        self.tail = b""  # bytes after the last complete line
        self.wbuf = bytearray()
        self.writing = False  # polled for EPOLLOUT
        self.expect = [0] * SENDERS  # checked receivers: next sequence number due from each sender
        self.failure: str | None = None
        self.joined = False
        self.sent = 0  # messages this client sent in the current phase (senders only)
        self.received = 0  # bench messages this client received in the current phase
        self.next_send = 0  # latency phase: when the next message is due (ns)


# ---------------------------------------------------------------------------------------------
# 3. The worker process
# ---------------------------------------------------------------------------------------------


@dataclass
class PhaseStats:
    """What one worker reports for one phase; the coordinator adds these up."""

    received: int = 0  # bench messages received (deliveries)
    expected: int = 0  # deliveries this worker's receivers should have got
    sent: int = 0  # messages sent by this worker's senders
    reordered: int = 0  # checked chunks whose sequence numbers did not continue where expected
    miscounted: int = 0  # receivers whose count did not end exactly at what they were sent
    checked: int = 0  # deliveries whose sequence numbers were checked (the rest were counted)
    disconnected: int = 0
    ready: int = 0
    failures: list[str] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds during the phase: summed over workers
    busiest_cpu: float = 0.0  # CPU seconds of the busiest worker process
    latencies_us: bytes = b""  # array('q') of microseconds, latency phase only
    timed_out: bool = False


class Worker:
    def __init__(self, worker_id: int, workers: int, progress, host: str, ports: tuple[int, ...],
                 nick_prefix: str, autojoin: bool | None, quickack: bool = True) -> None:
        self.id = worker_id
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")
        self.workers = workers
        # RawArray('q', workers + 1): the least progress of each worker's receivers, then a
        # flag raised when a sender dies (the others would wait for its share forever)
        self.progress = progress
        # Client idx connects to ports[idx % len(ports)]: several ports are the nodes of one
        # chat (cluster mode), the senders and the receivers spread over all of them.
        self.addresses = [(host, port) for port in ports]
        self.nick_prefix = nick_prefix
        self.autojoin = autojoin
        self.poller = select.epoll()  # used directly: the selectors layer costs per event
        self.clients: list[Client] = []
        self.by_fd: dict[int, Client] = {}
        self.stats = PhaseStats()
        self.lat = array("q")
        self.seq_text: list[bytes] = []  # b"0", b"1", ...: the sequence numbers of this phase

    # -- socket plumbing -----------------------------------------------------------------

    def open(self, idx: int) -> Client:
        client = Client(idx, len(self.clients), f"{self.nick_prefix}{idx:05d}")
        self.clients.append(client)
        address = self.addresses[idx % len(self.addresses)]
        sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.sock = sock
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(client, f"connect: {os.strerror(code)}")
            return client
        self.by_fd[sock.fileno()] = client
        self.poller.register(sock.fileno(), select.EPOLLOUT)
        client.writing = True
        return client

    def fail(self, client: Client, reason: str) -> None:
        if client.state == DEAD:
            return
        client.state = DEAD
        client.failure = reason
        self.stats.disconnected += 1
        if len(self.stats.failures) < 5:
            self.stats.failures.append(f"{client.nick}: {reason}")
        if client.sock is not None:
            self.unwatch(client)
            self.by_fd.pop(client.sock.fileno(), None)
            client.sock.close()

    def send(self, client: Client, data: bytes) -> None:
        client.wbuf += data
        self.flush(client)

    def flush(self, client: Client) -> None:
        if client.state == DEAD or client.state == CONNECTING:
            return
        if client.wbuf:
            try:
                sent = client.sock.send(client.wbuf)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self.fail(client, f"send: {error}")
                return
            del client.wbuf[:sent]
        if client.writing != bool(client.wbuf):
            client.writing = bool(client.wbuf)
            self.watch(client)

    def watch(self, client: Client) -> None:
        """Poll the client's socket (reads, and writes while it has output)."""
        want = select.EPOLLIN | (select.EPOLLOUT if client.wbuf else 0)
        try:
            self.poller.modify(client.sock.fileno(), want)
        except FileNotFoundError:
            self.poller.register(client.sock.fileno(), want)

    def unwatch(self, client: Client) -> None:
        """Stop polling the socket; it is then read only by ``sweep``."""
        try:
            self.poller.unregister(client.sock.fileno())
        except (FileNotFoundError, ValueError):
            pass  # not polled, or already closed

    def on_connected(self, client: Client) -> None:
        code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.fail(client, f"connect: {os.strerror(code)}")
            return
        client.state = REGISTERING
        client.writing = False
        self.poller.modify(client.sock.fileno(), select.EPOLLIN)
        self.send(client, f"NICK {client.nick}\r\nUSER {client.nick} 0 * :bench\r\n".encode())

    def read(self, client: Client) -> bytes | None:
        """Complete lines received now (possibly b""), or None if the client just died."""
        try:
            data = client.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return b""
        except OSError as error:
            self.fail(client, f"recv: {error}")
            return None
        if self.quickack:
            # Ack at once, so a server that leaves Nagle on is not held up by delayed ACKs.
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if not data:
            self.fail(client, "server closed the connection")
            return None
        if client.tail:
            data = client.tail + data
        end = data.rfind(b"\n") + 1
        client.tail = data[end:]
        return data[:end]  # the object itself, not a copy, when the chunk ends with a line

    def pump(self, timeout: float, on_lines) -> None:
        """One poll pass: connect completions, writes, and reads handed to ``on_lines``."""
        for fd, mask in self.poller.poll(timeout):
            client = self.by_fd.get(fd)
            if client is None:
                continue  # closed earlier in this pass
            if client.state == CONNECTING:
                if mask & select.EPOLLOUT:
                    self.on_connected(client)
                continue
            if mask & select.EPOLLOUT:
                self.flush(client)
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and client.state != DEAD:
                chunk = self.read(client)
                if chunk:
                    on_lines(client, chunk)

    # -- lines outside the measured traffic --------------------------------------------

    def control_lines(self, client: Client, chunk: bytes) -> None:
        """Registration, JOIN and keep-alive handling, one line at a time (slow path)."""
        me = b":" + client.nick.encode() + b"!"
        for line in chunk.split(b"\n"):
            line = line.rstrip(b"\r")
            if not line:
                continue
            if line.startswith(b"PING"):
                self.send(client, b"PONG" + line[4:] + b"\r\n")
                continue
            if line.startswith(b"ERROR"):
                self.fail(client, line.decode("utf-8", "replace"))
                return
            if client.state == READY:
                continue
            parts = line.split(b" ", 3)
            if len(parts) < 2:
                continue
            command = parts[1]
            if command == b"001" and client.state == REGISTERING:
                client.state = JOINING
                if self.autojoin is False:
                    self.send(client, f"JOIN {CHANNEL}\r\n".encode())
            elif command in (b"376", b"422") and self.autojoin is None and not client.joined:
                self.send(client, f"JOIN {CHANNEL}\r\n".encode())  # end of MOTD, not auto-joined
            elif command == b"JOIN" and line.startswith(me):
                client.joined = True
            elif command == b"366" and client.joined and client.state == JOINING:
                client.state = READY
                self.stats.ready += 1
            elif command in (b"432", b"433", b"451", b"465", b"471", b"473", b"474"):
                self.fail(client, line.decode("utf-8", "replace"))
                return

    def quiet_lines(self, client: Client, chunk: bytes) -> None:
        """Between phases: only keep-alives and errors matter."""
        if b"PING" in chunk or b"ERROR" in chunk or client.state != READY:
            self.control_lines(client, chunk)

    # -- phases ----------------------------------------------------------------------------

    def run(self, conn) -> None:
        handlers = {
            "connect": self.phase_connect, "idle": self.phase_idle, "fanout": self.phase_fanout,
            "latency": self.phase_latency, "close": self.phase_close,
        }
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            self.stats = PhaseStats()
            started = cpu_seconds()
            handlers[command](**args)
            self.stats.cpu = cpu_seconds() - started
            conn.send(self.stats)
        self.phase_close()

    def live(self) -> list[Client]:
        return [client for client in self.clients if client.state != DEAD]

    def phase_connect(self, ids: list[int], wave: int, timeout: float) -> None:
        """Connect ``ids`` with at most ``wave`` of this worker's clients in progress at once.

        A new client starts as soon as one in progress is in the room (a sliding wave), so
        the listen backlog never sees more than ``wave`` per worker, without idling between
        waves. Clients already in the room are not read on every JOIN the server sends them
        (that is N*N small reads): they are swept every ``SWEEP_INTERVAL`` instead.
        """
        deadline = time.monotonic() + timeout
        pending = list(reversed(ids))
        in_progress: list[Client] = []
        swept = [c for c in self.live() if c.state == READY]
        for client in swept:
            self.unwatch(client)
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        try:
            while pending or in_progress:
                still = []
                for client in in_progress:
                    if client.state == READY:
                        self.unwatch(client)
                        swept.append(client)
                    elif client.state != DEAD:
                        still.append(client)
                in_progress = still
                while pending and len(in_progress) < wave:
                    in_progress.append(self.open(pending.pop()))
                if time.monotonic() >= next_sweep:
                    self.sweep(swept, self.quiet_lines)
                    next_sweep = time.monotonic() + SWEEP_INTERVAL
                if not in_progress:
                    continue
                if time.monotonic() > deadline:
                    self.stats.timed_out = True
                    for client in in_progress:
                        self.fail(client, f"not registered and joined after {timeout:.0f} s")
                    self.stats.disconnected += len(pending)
                    if pending and len(self.stats.failures) < 5:
                        self.stats.failures.append(f"{len(pending)} clients never started")
                    return
                self.pump(max(0.0, min(0.05, next_sweep - time.monotonic())), self.quiet_lines)
        finally:
            for client in swept:
                if client.state != DEAD:
                    self.watch(client)

    def sweep(self, clients: list[Client], on_lines) -> None:
        """Read whatever is waiting on sockets that are not polled."""
        for client in clients:
            if client.state != DEAD:
                chunk = self.read(client)
                if chunk:
                    on_lines(client, chunk)

    def phase_idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.pump(min(remaining, 0.05), self.quiet_lines)

    def phase_close(self) -> None:
        for client in self.clients:
            if client.sock is not None and client.state != DEAD:
                self.unwatch(client)
                client.sock.close()
            client.state = DEAD
        self.clients.clear()
        self.by_fd.clear()

    # -- what a receiver does with a chunk of complete lines ------------------------------

    def counted(self, client: Client, chunk: bytes) -> None:
        """Most receivers: count the bench lines with one C-speed scan, nothing per line."""
        found = chunk.count(MARKER)
        client.received += found
        self.stats.received += found
        if found != chunk.count(b"\n"):
            self.quiet_lines(client, chunk)  # something else came along: PING, ERROR, ...

    def checked(self, client: Client, chunk: bytes, timed: bool = False) -> None:
        """Sampled receivers: each sender's sequence numbers must continue where they stopped.

        ``timed`` also takes each line's latency from the send time in its text.
        """
        now = time.monotonic_ns() if timed else 0
        found_total = 0
        for sender in range(SENDERS):
            if timed:
                pairs = SEQ_TIME_PATTERNS[sender].findall(chunk)
                self.lat.extend([(now - int(sent)) // 1000 for _, sent in pairs])
                found = [seq for seq, _ in pairs]
            else:
                found = SEQ_PATTERNS[sender].findall(chunk)
            if not found:
                continue
            first = client.expect[sender]
            count = len(found)
            # Digits compared as bytes: no int per line; ints only to say what went wrong.
            if found != self.seq_text[first:first + count]:
                seqs = list(map(int, found))
                if seqs != list(range(first, first + count)):
                    self.stats.reordered += 1
                    if len(self.stats.failures) < 5:
                        self.stats.failures.append(
                            f"{client.nick}: from s{sender} expected {first}.., got {seqs[:8]}")
                    count = max(seqs) + 1 - first  # resynchronise on what arrived
            client.expect[sender] = first + count
            found_total += len(found)
        client.received += found_total
        self.stats.received += found_total
        self.stats.checked += found_total
        if found_total != chunk.count(b"\n"):
            self.quiet_lines(client, chunk)  # something else came along: PING, ERROR, ...

    def _setup_measure(self, per_sender: int) -> tuple[list[Client], dict[int, int]]:
        """Reset the counters; return this worker's live senders and what each receiver is due."""
        live = self.live()
        self.seq_text = [b"%d" % seq for seq in range(per_sender)]
        for client in live:
            client.expect = [0] * SENDERS
            client.sent = 0
            client.received = 0
        due = {c.pos: per_sender * (SENDERS - 1 if c.idx < SENDERS else SENDERS) for c in live}
        self.stats.expected = sum(due.values())
        senders = [c for c in live if c.idx < SENDERS]
        return senders, due

    def _check_counts(self, due: dict[int, int]) -> None:
        """Every live receiver must have received exactly what it was sent: no loss, no extra."""
        for client in self.clients:
            if client.state == DEAD or client.received == due[client.pos]:
                continue
            self.stats.miscounted += 1
            if len(self.stats.failures) < 5:
                self.stats.failures.append(
                    f"{client.nick}: received {client.received} bench lines, expected {due[client.pos]}")

    def _send_messages(self, client: Client, first: int, count: int) -> None:
        """Send messages ``first .. first+count-1``, all stamped now, as ``message_text`` says.

        Built with one C-speed join over the pre-made sequence numbers: formatting each line
        in Python cost more than receiving it nine times over at N=10.
        """
        head = f"PRIVMSG {CHANNEL} :s{client.idx} ".encode()  # message_text, around the seq
        tail = f" {time.monotonic_ns()} {FILLER}\r\n".encode()
        lines = head + (tail + head).join(self.seq_text[first:first + count]) + tail
        client.sent = first + count
        self.stats.sent += count
        self.send(client, lines)

    def _publish(self) -> None:
        """This worker's least receiver progress: messages received + messages it sent itself."""
        self.progress[self.id] = min(
            [c.received + c.sent if c.state != DEAD else NO_LAG for c in self.clients] or [NO_LAG])

    def phase_fanout(self, per_sender: int, window: int, timeout: float, checked_ids: list[int]) -> None:
        """Senders send ``per_sender`` each, at most ``window`` in flight ahead of the slowest.

        A sender may send while its count stays within its share of the window above the
        slowest receiver's progress (which counts every sender's messages): with all senders
        at the same pace, that is ``window / S`` each.
        """
        senders, due = self._setup_measure(per_sender)
        checked_ids = set(checked_ids)
        self._publish()
        deadline = time.monotonic() + timeout
        counted, checked = self.counted, self.checked

        def on_lines(client: Client, chunk: bytes) -> None:
            if client.idx in checked_ids:
                checked(client, chunk)
            else:
                counted(client, chunk)

        while True:
            waiting = False
            slowest = min(self.progress[:self.workers])
            if any(c.state == DEAD for c in senders):
                self.progress[self.workers] = 1
            if self.progress[self.workers]:
                break  # a sender died: this run has failed, and the others cannot finish it
            for client in senders:
                if client.state == DEAD or client.sent >= per_sender:
                    continue
                allowed = min(per_sender, (slowest + window) // SENDERS) - client.sent
                if allowed > 0 and not client.wbuf:
                    self._send_messages(client, client.sent, allowed)
                else:
                    waiting = True
            senders_done = all(c.sent >= per_sender or c.state == DEAD for c in senders)
            if self.stats.received >= self.stats.expected and senders_done:
                break
            if time.monotonic() > deadline:
                self.stats.timed_out = True
                break
            self.pump(SENDER_POLL if waiting else 0.02, on_lines)
            self._publish()
        self._check_counts(due)

    def phase_latency(self, per_sender: int, rate: float, start_ns: int, drain: float,
                      probe_step: int) -> None:
        """Each sender sends ``per_sender`` messages, paced so that all S offer ``rate``/s.

        Latency is taken at the probes (clients whose id is a multiple of ``probe_step``),
        which are read as soon as data arrives and checked. The other receivers are swept every
        ``SWEEP_INTERVAL`` and only counted: the server does the same work for them, while the
        generator spends its CPU on far fewer, larger reads.
        """
        senders, due = self._setup_measure(per_sender)
        self.lat = array("q")
        swept = [c for c in self.live() if c.idx % probe_step]
        for client in swept:
            self.unwatch(client)
        interval_ns = int(1e9 * SENDERS / rate)
        for client in senders:
            client.next_send = start_ns + client.idx * interval_ns // SENDERS
        end_of_sending = start_ns + per_sender * interval_ns
        deadline = time.monotonic() + (end_of_sending - time.monotonic_ns()) / 1e9 + drain
        timed = lambda client, chunk: self.checked(client, chunk, timed=True)  # noqa: E731
        next_sweep = time.monotonic()
        while True:
            now = time.monotonic_ns()
            next_due = None
            for client in senders:
                if client.state == DEAD or client.sent >= per_sender:
                    continue
                if client.next_send <= now:
                    due_now = min(per_sender - client.sent, 1 + (now - client.next_send) // interval_ns)
                    self._send_messages(client, client.sent, due_now)
                    client.next_send += due_now * interval_ns
                if client.sent < per_sender:
                    next_due = client.next_send if next_due is None else min(next_due, client.next_send)
            if time.monotonic() >= next_sweep:
                self.sweep(swept, self.counted)
                next_sweep = time.monotonic() + SWEEP_INTERVAL
            if self.stats.received >= self.stats.expected and next_due is None:
                break
            if time.monotonic() > deadline:
                self.stats.timed_out = True
                break
            wait = next_sweep - time.monotonic()
            if next_due is not None:
                wait = min(wait, (next_due - time.monotonic_ns()) / 1e9)
            self.pump(max(0.0, wait), timed)
        for client in swept:
            if client.state != DEAD:
                self.watch(client)
        self._check_counts(due)
        self.stats.latencies_us = self.lat.tobytes()
        self.lat = array("q")


def worker_main(conn, worker_id, workers, progress, host, ports, nick_prefix, autojoin,
                quickack) -> None:
    raise_fd_limit()
    worker = Worker(worker_id, workers, progress, host, ports, nick_prefix, autojoin, quickack)
    try:
        worker.run(conn)
    except (EOFError, KeyboardInterrupt):
        worker.phase_close()  # the coordinator went away: just let go of the sockets


# ---------------------------------------------------------------------------------------------
# 4. The coordinator
# ---------------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    elapsed: float
    stats: PhaseStats  # summed over workers
    latencies_us: list[int] = field(default_factory=list)  # sorted


class LoadGenerator:
    """Starts ``workers`` processes against one server (or the nodes of one chat, on
    ``port`` and ``more_ports``) and runs phases on all of them."""

    def __init__(self, host: str, port: int, workers: int = 2, nick_prefix: str = "b",
                 autojoin: bool | None = True, quickack: bool = True,
                 more_ports: tuple[int, ...] = ()) -> None:
        raise_fd_limit()
        context = multiprocessing.get_context("fork")
        self.workers = workers
        self.progress = context.RawArray("q", workers + 1)
        self.pipes = []
        self.procs = []
        for worker_id in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, name=f"bench-worker-{worker_id}", daemon=True,
                args=(child, worker_id, workers, self.progress, host, (port, *more_ports), nick_prefix,
                      autojoin, quickack),
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.clients = 0

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _run(self, command: str, per_worker_args: list[dict], timeout: float) -> PhaseResult:
        self.progress[:] = [0] * (self.workers + 1)
        started = time.monotonic()
        for pipe, args in zip(self.pipes, per_worker_args):
            pipe.send((command, args))
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(max(1.0, timeout + 30 - (time.monotonic() - started))):
                raise TimeoutError(f"a bench worker did not finish {command!r}")
            replies.append(pipe.recv())
        elapsed = time.monotonic() - started
        total = PhaseStats()
        latencies = array("q")
        for stats in replies:
            for name in ("received", "expected", "sent", "reordered", "miscounted", "checked",
                         "disconnected", "ready", "cpu"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            total.busiest_cpu = max(total.busiest_cpu, stats.cpu)
            total.failures += stats.failures
            total.timed_out |= stats.timed_out
            latencies.frombytes(stats.latencies_us)
        return PhaseResult(elapsed, total, sorted(latencies))

    def connect(self, count: int, wave: int = CONNECT_WAVE, timeout: float = 180.0) -> PhaseResult:
        """Connect, register and join clients ``self.clients .. count-1``, in waves."""
        ids = list(range(self.clients, count))
        self.clients = count
        per_wave = max(1, wave // self.workers)
        args = [
            {"ids": [i for i in ids if i % self.workers == w], "wave": per_wave, "timeout": timeout}
            for w in range(self.workers)
        ]
        return self._run("connect", args, timeout)

    def idle(self, seconds: float) -> PhaseResult:
        return self._run("idle", [{"seconds": seconds}] * self.workers, seconds)

    def fanout(self, per_sender: int, window: int = WINDOW, timeout: float = 120.0,
               order_sample: int = ORDER_SAMPLE) -> PhaseResult:
        """Every sender sends ``per_sender`` messages; the last ``order_sample`` ids are checked."""
        checked_ids = list(range(max(0, self.clients - order_sample), self.clients))
        args = {"per_sender": per_sender, "window": window, "timeout": timeout,
                "checked_ids": checked_ids}
        return self._run("fanout", [args] * self.workers, timeout)

    def latency(self, rate: float = 200.0, duration: float = 3.0, drain: float = 30.0) -> PhaseResult:
        per_sender = max(1, int(duration * rate / SENDERS))
        start_ns = time.monotonic_ns() + 200_000_000  # every worker starts on the same tick
        probe_step = max(1, self.clients // LATENCY_PROBES)
        args = {"per_sender": per_sender, "rate": rate, "start_ns": start_ns, "drain": drain,
                "probe_step": probe_step}
        return self._run("latency", [args] * self.workers, duration + drain)

    def close(self) -> None:
        if self.procs and all(proc.is_alive() for proc in self.procs):
            self._run("close", [{}] * self.workers, 30.0)

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop", {}))
            except OSError:
                pass  # that worker is gone already
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()  # by PID: a worker this generator started
                proc.join(5)
        self.procs.clear()
        self.pipes.clear()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
