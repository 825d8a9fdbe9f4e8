"""The load generator: worker processes, each driving many IRC clients with one selector.

Map of this file:

1. Wire format of the bench's messages: ``message_text`` and the per-sender patterns that
   find them again in a received chunk (sender id, sequence number, send time in ns).
2. ``Client``: one non-blocking socket with its read tail, write buffer and counters.
3. ``Worker``: the loop of one process. It owns clients ``idx % workers == worker_id`` and
   runs one phase per command it reads from its pipe: connect, idle, fanout, latency, close.
4. ``LoadGenerator``: the coordinator in the parent process; it starts the workers, sends each
   phase to all of them at once, times the phase and adds up what they report.

Clients 0..S-1 are the senders; every client, senders included, is a receiver and counts
every message from every other sender. Received chunks are checked with C-speed regex scans:
for each sender, the sequence numbers found in a chunk must continue exactly where the last
chunk stopped, so a lost, duplicated or reordered line is caught without a per-line loop.

During fanout a sender may run at most ``window / S`` messages ahead of the *slowest*
receiver of its messages anywhere: each worker publishes, per sender, the minimum count over
its own receivers in a shared array, and a sender reads the minimum over all workers.
All clocks are ``time.monotonic_ns()``: one clock for the whole host, so a receiver in one
process can subtract a send time stamped in another.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import re
import resource
import selectors
import socket
import time
from array import array
from dataclasses import dataclass, field

SENDERS = 4
CHANNEL = "#chat"
RECV_BYTES = 1 << 18
SWEEP_INTERVAL = 0.05  # seconds between reads of the non-probe receivers (latency phase)
LATENCY_PROBES = 64  # receivers at which latency is taken, spread evenly over the ids
CONNECT_WAVE = 10  # clients connecting at once, over all workers (ngircd listens with backlog 10)
FILLER = "x" * 24  # makes a line about the size of a short chat message


# ---------------------------------------------------------------------------------------------
# 1. Wire format
# ---------------------------------------------------------------------------------------------


def message_text(sender: int, seq: int, sent_ns: int) -> str:
    """The text a sender puts in its PRIVMSG: ``s<id> <seq> <send time ns> <filler>``."""
    return f"s{sender} {seq} {sent_ns} {FILLER}"


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
    times = os.times()
    return times.user + times.system


# ---------------------------------------------------------------------------------------------
# 2. One client
# ---------------------------------------------------------------------------------------------

CONNECTING, REGISTERING, JOINING, READY, DEAD = range(5)


class Client:
    __slots__ = (
        "idx", "pos", "nick", "sock", "state", "tail", "wbuf", "writing", "expect",
        "failure", "joined", "sent", "next_send",
    )

    def __init__(self, idx: int, pos: int, nick: str) -> None:
        self.idx = idx  # global id; ids below SENDERS are the senders
        self.pos = pos  # index among this worker's clients
        self.nick = nick
        self.sock: socket.socket | None = None
        self.state = CONNECTING
        self.tail = b""  # bytes after the last complete line
        self.wbuf = bytearray()
        self.writing = False  # registered for EVENT_WRITE
        self.expect = [0] * SENDERS  # next sequence number due from each sender
        self.failure: str | None = None
        self.joined = False
        self.sent = 0  # messages this client sent in the current phase (senders only)
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
    reordered: int = 0  # chunks whose sequence numbers did not continue where expected
    disconnected: int = 0
    ready: int = 0
    failures: list[str] = field(default_factory=list)
    cpu: float = 0.0  # this worker's CPU seconds during the phase
    latencies_us: bytes = b""  # array('q') of microseconds, latency phase only
    timed_out: bool = False


class Worker:
    def __init__(self, worker_id: int, workers: int, progress, host: str, port: int,
                 nick_prefix: str, autojoin: bool | None, quickack: bool = True) -> None:
        self.id = worker_id
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")
        self.workers = workers
        self.progress = progress  # RawArray('q', workers * SENDERS)
        self.address = (host, port)
        self.nick_prefix = nick_prefix
        self.autojoin = autojoin
        self.selector = selectors.DefaultSelector()
        self.clients: list[Client] = []
        self.by_fd: dict[int, Client] = {}
        self.stats = PhaseStats()
        self.lat = array("q")

    # -- socket plumbing -----------------------------------------------------------------

    def open(self, idx: int) -> Client:
        client = Client(idx, len(self.clients), f"{self.nick_prefix}{idx:05d}")
        self.clients.append(client)
        sock = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.sock = sock
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(client, f"connect: {os.strerror(code)}")
            return client
        self.by_fd[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_WRITE, client)
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
            try:
                self.selector.unregister(client.sock)
            except (KeyError, ValueError):
                pass  # never registered, or already gone
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
        """Put the client's socket in the selector (reads, and writes while it has output)."""
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.wbuf else 0)
        try:
            self.selector.modify(client.sock, want, client)
        except KeyError:
            self.selector.register(client.sock, want, client)

    def unwatch(self, client: Client) -> None:
        """Take the socket out of the selector; it is then read only by ``sweep``."""
        try:
            self.selector.unregister(client.sock)
        except KeyError:
            pass  # not in the selector

    def on_connected(self, client: Client) -> None:
        code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.fail(client, f"connect: {os.strerror(code)}")
            return
        client.state = REGISTERING
        client.writing = False
        self.selector.modify(client.sock, selectors.EVENT_READ, client)
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
        return data[:end]

    def pump(self, timeout: float, on_lines) -> None:
        """One select pass: connect completions, writes, and reads handed to ``on_lines``."""
        for key, mask in self.selector.select(timeout):
            client = key.data
            if client.state == CONNECTING:
                if mask & selectors.EVENT_WRITE:
                    self.on_connected(client)
                continue
            if mask & selectors.EVENT_WRITE:
                self.flush(client)
            if mask & selectors.EVENT_READ and client.state != DEAD:
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
        """Read whatever is waiting on sockets that are not in the selector."""
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
                try:
                    self.selector.unregister(client.sock)
                except (KeyError, ValueError):
                    pass  # not registered
                client.sock.close()
            client.state = DEAD
        self.clients.clear()
        self.by_fd.clear()

    def _measured(self, client: Client, chunk: bytes, counts: list[list[int]], timed: bool) -> None:
        """Count and check the bench messages in one chunk of complete lines."""
        now = time.monotonic_ns() if timed else 0
        found_total = 0
        for sender in range(SENDERS):
            if timed:
                found = SEQ_TIME_PATTERNS[sender].findall(chunk)
                if not found:
                    continue
                seqs = [int(seq) for seq, _ in found]
                self.lat.extend([(now - int(sent)) // 1000 for _, sent in found])
            else:
                found = SEQ_PATTERNS[sender].findall(chunk)
                if not found:
                    continue
                seqs = list(map(int, found))
            first = client.expect[sender]
            count = len(seqs)
            if seqs != list(range(first, first + count)):
                self.stats.reordered += 1
                if len(self.stats.failures) < 5:
                    self.stats.failures.append(
                        f"{client.nick}: from s{sender} expected {first}.., got {seqs[:8]}")
                count = max(seqs) + 1 - first  # resynchronise on what arrived
            client.expect[sender] = first + count
            counts[sender][client.pos] = first + count
            found_total += count
        self.stats.received += found_total
        if found_total != chunk.count(b"\n"):
            self.quiet_lines(client, chunk)  # something else came along: PING, ERROR, ...

    def _setup_measure(self, per_sender: int) -> tuple[list[list[int]], list[Client], int]:
        live = self.live()
        for client in live:
            client.expect = [0] * SENDERS
            client.sent = 0
        counts = [[0] * max(1, len(self.clients)) for _ in range(SENDERS)]
        for client in self.clients:  # the dead and each sender itself never hold anyone back
            for sender in range(SENDERS):
                if client.state == DEAD or client.idx == sender:
                    counts[sender][client.pos] = per_sender
        senders = [c for c in live if c.idx < SENDERS]
        expected = sum(1 for c in live for s in range(SENDERS) if c.idx != s) * per_sender
        return counts, senders, expected

    def _send_messages(self, client: Client, first: int, count: int) -> None:
        now = time.monotonic_ns()
        lines = "".join(
            f"PRIVMSG {CHANNEL} :{message_text(client.idx, seq, now)}\r\n"
            for seq in range(first, first + count)
        )
        client.sent = first + count
        self.stats.sent += count
        self.send(client, lines.encode())

    def _publish(self, counts: list[list[int]]) -> None:
        base = self.id * SENDERS
        for sender in range(SENDERS):
            self.progress[base + sender] = min(counts[sender])

    def phase_fanout(self, per_sender: int, window: int, timeout: float) -> None:
        counts, senders, expected = self._setup_measure(per_sender)
        self.stats.expected = expected
        self._publish(counts)
        per_sender_window = max(1, window // SENDERS)
        deadline = time.monotonic() + timeout
        handler = lambda client, chunk: self._measured(client, chunk, counts, False)  # noqa: E731
        while True:
            waiting = False
            for client in senders:
                if client.state == DEAD or client.sent >= per_sender:
                    continue
                slowest = min(self.progress[w * SENDERS + client.idx] for w in range(self.workers))
                allowed = min(per_sender, slowest + per_sender_window) - client.sent
                if allowed > 0 and not client.wbuf:
                    self._send_messages(client, client.sent, allowed)
                else:
                    waiting = True
            senders_done = all(c.sent >= per_sender or c.state == DEAD for c in senders)
            if self.stats.received >= expected and senders_done:
                break
            if time.monotonic() > deadline:
                self.stats.timed_out = True
                break
            self.pump(0.001 if waiting else 0.02, handler)
            self._publish(counts)

    def phase_latency(self, per_sender: int, rate: float, start_ns: int, drain: float,
                      probe_step: int) -> None:
        """Each sender sends ``per_sender`` messages, paced so that all S offer ``rate``/s.

        Latency is taken at the probes (clients whose id is a multiple of ``probe_step``),
        which are read as soon as data arrives. The other receivers are swept every
        ``SWEEP_INTERVAL`` and only counted and checked: the server does the same work for
        them, while the generator spends its CPU on far fewer, larger reads.
        """
        counts, senders, expected = self._setup_measure(per_sender)
        self.stats.expected = expected
        self.lat = array("q")
        swept = [c for c in self.live() if c.idx % probe_step]
        for client in swept:
            self.unwatch(client)
        interval_ns = int(1e9 * SENDERS / rate)
        for client in senders:
            client.next_send = start_ns + client.idx * interval_ns // SENDERS
        end_of_sending = start_ns + per_sender * interval_ns
        deadline = time.monotonic() + (end_of_sending - time.monotonic_ns()) / 1e9 + drain
        timed = lambda client, chunk: self._measured(client, chunk, counts, True)  # noqa: E731
        counted = lambda client, chunk: self._measured(client, chunk, counts, False)  # noqa: E731
        next_sweep = time.monotonic()
        while True:
            now = time.monotonic_ns()
            next_due = None
            for client in senders:
                if client.state == DEAD or client.sent >= per_sender:
                    continue
                if client.next_send <= now:
                    due = min(per_sender - client.sent, 1 + (now - client.next_send) // interval_ns)
                    self._send_messages(client, client.sent, due)
                    client.next_send += due * interval_ns
                if client.sent < per_sender:
                    next_due = client.next_send if next_due is None else min(next_due, client.next_send)
            if time.monotonic() >= next_sweep:
                self.sweep(swept, counted)
                next_sweep = time.monotonic() + SWEEP_INTERVAL
            if self.stats.received >= expected and next_due is None:
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
        self.stats.latencies_us = self.lat.tobytes()
        self.lat = array("q")


def worker_main(conn, worker_id, workers, progress, host, port, nick_prefix, autojoin,
                quickack) -> None:
    raise_fd_limit()
    worker = Worker(worker_id, workers, progress, host, port, nick_prefix, autojoin, quickack)
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
    """Starts ``workers`` processes against one server and runs phases on all of them."""

    def __init__(self, host: str, port: int, workers: int = 2, nick_prefix: str = "b",
                 autojoin: bool | None = True, quickack: bool = True) -> None:
        raise_fd_limit()
        context = multiprocessing.get_context("fork")
        self.workers = workers
        self.progress = context.RawArray("q", workers * SENDERS)
        self.pipes = []
        self.procs = []
        for worker_id in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, name=f"bench-worker-{worker_id}", daemon=True,
                args=(child, worker_id, workers, self.progress, host, port, nick_prefix, autojoin,
                      quickack),
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.clients = 0

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _run(self, command: str, per_worker_args: list[dict], timeout: float) -> PhaseResult:
        for index in range(self.workers):
            self.progress[index * SENDERS:(index + 1) * SENDERS] = [0] * SENDERS
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
            for name in ("received", "expected", "sent", "reordered", "disconnected", "ready"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            total.cpu += stats.cpu
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

    def fanout(self, per_sender: int, window: int = 64, timeout: float = 120.0) -> PhaseResult:
        args = {"per_sender": per_sender, "window": window, "timeout": timeout}
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
