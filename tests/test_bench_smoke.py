"""A tiny run of the benchmark harness (bench/): correctness only, never timing.

The load generator's two checks are tested first on crafted chunks: a *checked* receiver
must catch a lost, a duplicated and a reordered line; a *counted* receiver must end exactly at
what it was sent. Then the whole generator runs against fake relays that lose, duplicate or
reorder one line or drop a client, and each fault must be reported. Last, the harness runs
against the real servers and the C relay with 5 clients: everything sent must arrive.
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import threading
from array import array

import pytest

from bench import loadgen
from bench.loadgen import SENDERS, Client, LoadGenerator, Worker, message_text
from bench.servers import ClusterServer, NgircdServer, OurServer, RelayServer, RelayUnavailable


def _line(sender: int, seq: int) -> bytes:
    text = message_text(sender, seq, 123456789)
    return f":s{sender}!~u@127.0.0.1 PRIVMSG #chat :{text}\r\n".encode()


def _receiver() -> tuple[Worker, Client]:
    worker = Worker(0, 1, array("q", [0, 0]), "127.0.0.1", (1,), "t", True, quickack=False)
    client = Client(idx=SENDERS, pos=0, nick="t00004")
    client.state = loadgen.READY
    worker.clients.append(client)
    return worker, client


def test_checked_receiver_accepts_interleaved_in_order_lines():
    worker, client = _receiver()
    chunk = _line(0, 0) + _line(1, 0) + _line(0, 1) + _line(2, 0) + _line(1, 1)
    worker.checked(client, chunk, timed=True)
    worker.checked(client, _line(0, 2))
    assert worker.stats.received == worker.stats.checked == client.received == 6
    assert worker.stats.reordered == 0
    assert client.expect == [3, 2, 1, 0]
    assert len(worker.lat) == 5


@pytest.mark.parametrize(
    "seqs", [[0, 2], [0, 0, 1], [1, 0], [0, 2, 1]], ids=["lost", "duplicated", "swapped", "reordered"]
)
def test_checked_receiver_catches_loss_duplication_and_reordering(seqs):
    worker, client = _receiver()
    worker.checked(client, b"".join(_line(3, seq) for seq in seqs))
    assert worker.stats.reordered == 1


def test_checked_receiver_catches_a_gap_between_chunks():
    worker, client = _receiver()
    worker.checked(client, _line(1, 0) + _line(1, 1))
    worker.checked(client, _line(1, 3))
    assert worker.stats.reordered == 1


@pytest.mark.parametrize("delivered, miscounted", [(8, 0), (7, 1), (9, 1)],
                         ids=["exact", "one-lost", "one-extra"])
def test_counted_receiver_must_end_exactly_at_what_it_was_sent(delivered, miscounted):
    worker, client = _receiver()
    lines = [_line(sender, seq) for seq in range(2) for sender in range(SENDERS)]
    lines += [lines[0]] * (delivered - len(lines))  # a duplicate when asked for more
    chunk = b"".join(lines[:delivered])
    client.sock, server_end = socket.socketpair()
    with client.sock, server_end:
        client.sock.setblocking(False)
        for part in (chunk[:50], chunk[50:]):  # a read may end anywhere inside a line
            server_end.sendall(part)
            worker.counted(client, worker.read(client))
    assert client.received == delivered
    worker._check_counts({client.pos: 2 * SENDERS})
    assert worker.stats.miscounted == miscounted
    assert worker.stats.checked == 0  # counting looks at no sequence number


def test_senders_write_what_message_text_says():
    worker, _ = _receiver()
    worker.seq_text = [b"%d" % seq for seq in range(10)]
    sender = Client(idx=1, pos=1, nick="t00001")
    sender.state = loadgen.READY
    sender.sock, server_end = socket.socketpair()
    with sender.sock, server_end:
        worker._send_messages(sender, 3, 4)
        lines = server_end.recv(65536).decode().splitlines()
    stamp = int(lines[0].split()[4])
    assert lines == [f"PRIVMSG #chat :{message_text(1, seq, stamp)}" for seq in range(3, 7)]
    assert sender.sent == 7 and worker.stats.sent == 4


# ---------------------------------------------------------------------------------------------
# A fake relay with one fault, to prove the whole generator reports it
# ---------------------------------------------------------------------------------------------

FAULTY_LINE = 10  # the fault hits the first relayed PRIVMSG after this many that the victim hears


class FaultyRelay(threading.Thread):
    """Just enough IRC for the generator, relaying PRIVMSG with one fault after ``FAULTY_LINE``.

    ``fault`` is "lose" or "duplicate" (that line, for the receiver with id ``victim``),
    "swap" (that line comes after the sender's next one, for every receiver) or "drop"
    (the victim's connection is closed instead).
    """

    def __init__(self, fault: str, victim: int) -> None:
        super().__init__(daemon=True)
        self.fault, self.victim = fault, victim
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.nicks: dict[socket.socket, str] = {}
        self.members: list[socket.socket] = []
        self.tails: dict[socket.socket, bytes] = {}
        self.held: dict[tuple[socket.socket, str], bytes] = {}  # "swap": (receiver, sender) -> line
        self.relayed = 0
        self.faulted = False
        self.running = True

    def run(self) -> None:
        while self.running:
            for key, _ in self.selector.select(0.05):
                if key.fileobj.fileno() == -1:
                    continue  # closed by a fault earlier in this pass
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    self.selector.register(conn, selectors.EVENT_READ)
                    self.tails[conn] = b""
                else:
                    self.read(key.fileobj)

    def stop(self) -> None:
        self.running = False
        self.join(5)
        for sock in [*self.tails, self.listener]:
            sock.close()

    def read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except ConnectionError:
            data = b""  # the generator let go
        if not data:
            self.close(conn)
            return
        *lines, self.tails[conn] = (self.tails[conn] + data).split(b"\r\n")
        for line in lines:
            self.handle(conn, line.decode())

    def close(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        if conn in self.members:
            self.members.remove(conn)
        conn.close()

    def handle(self, conn: socket.socket, line: str) -> None:
        command, _, rest = line.partition(" ")
        nick = self.nicks.get(conn, "")
        if command == "NICK":
            self.nicks[conn] = rest
        elif command == "USER":
            conn.sendall(f":fake 001 {nick} :hi\r\n".encode())
        elif command == "JOIN":
            self.members.append(conn)
            conn.sendall(f":{nick}!u@h JOIN #chat\r\n:fake 366 {nick} #chat :end\r\n".encode())
        elif command == "PRIVMSG":
            self.relay(conn, f":{nick}!u@h {line}\r\n".encode())

    def is_victim(self, conn: socket.socket) -> bool:
        return self.nicks[conn].endswith(f"{self.victim:05d}")

    def relay(self, sender: socket.socket, line: bytes) -> None:
        self.relayed += 1
        faulty = self.relayed > FAULTY_LINE and not self.faulted and not self.is_victim(sender)
        self.faulted |= faulty
        for member in list(self.members):
            if member is sender:
                continue
            victim = self.is_victim(member)
            held = self.held.pop((member, self.nicks[sender]), b"")
            if faulty and self.fault == "swap":
                self.held[(member, self.nicks[sender])] = line
            elif faulty and victim and self.fault == "drop":
                self.close(member)
            elif not (faulty and victim and self.fault == "lose"):
                copies = 2 if faulty and victim and self.fault == "duplicate" else 1
                member.sendall(line * copies + held)


MEMBERS = 5
PER_SENDER = 40


def _fanout_through(relay: FaultyRelay, order_sample: int = 2) -> loadgen.PhaseStats:
    relay.start()
    try:
        with LoadGenerator(relay.host, relay.port, workers=2, nick_prefix="flt",
                           autojoin=False) as gen:
            connected = gen.connect(MEMBERS, wave=4, timeout=10)
            assert connected.stats.ready == MEMBERS, connected.stats.failures
            stats = gen.fanout(PER_SENDER, window=16, timeout=3, order_sample=order_sample).stats
            gen.close()
            return stats
    finally:
        relay.stop()


@pytest.mark.timeout(30)
def test_the_fake_relay_without_a_fault_passes():
    stats = _fanout_through(FaultyRelay("none", victim=0))
    assert stats.received == stats.expected == SENDERS * PER_SENDER * (MEMBERS - 1)
    assert (stats.miscounted, stats.reordered, stats.disconnected) == (0, 0, 0)
    assert stats.checked == (2 * SENDERS - 1) * PER_SENDER  # id 3 (a sender) hears 3, id 4 hears 4
    assert not stats.timed_out


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["lose", "duplicate"])
def test_a_counted_receiver_that_loses_or_gains_a_line_is_reported(fault):
    stats = _fanout_through(FaultyRelay(fault, victim=MEMBERS - 3))  # ids 3, 4 are checked
    assert stats.miscounted >= 1, stats.failures
    assert stats.reordered == 0  # no checked receiver was touched


@pytest.mark.timeout(30)
def test_a_swapped_pair_of_lines_is_caught_on_the_sampled_receivers():
    stats = _fanout_through(FaultyRelay("swap", victim=0))
    assert stats.reordered >= 1, stats.failures
    assert stats.received == stats.expected and stats.miscounted == 0  # counts alone pass it


@pytest.mark.timeout(30)
def test_a_dropped_receiver_is_reported():
    stats = _fanout_through(FaultyRelay("drop", victim=MEMBERS - 1))
    assert stats.disconnected == 1, stats.failures


# ---------------------------------------------------------------------------------------------
# The real servers and the C relay, 5 clients
# ---------------------------------------------------------------------------------------------


def _run_small(server, members: int = MEMBERS, per_sender: int = PER_SENDER, connected_check=None) -> None:
    server.start()
    try:
        with LoadGenerator(server.host, server.port, workers=2, nick_prefix="smk",
                           autojoin=server.autojoin, more_ports=server.more_ports) as gen:
            connected = gen.connect(members, wave=4, timeout=20)
            assert connected.stats.ready == members, connected.stats.failures
            assert connected.stats.disconnected == 0
            if connected_check is not None:
                connected_check()

            fanout = gen.fanout(per_sender, window=16, timeout=20, order_sample=2)
            stats = fanout.stats
            assert stats.sent == SENDERS * per_sender
            assert stats.expected == SENDERS * per_sender * (members - 1)
            assert stats.received == stats.expected, stats.failures
            assert stats.checked == (2 * SENDERS - 1) * per_sender  # ids 3 and 4
            assert stats.reordered == stats.miscounted == stats.disconnected == 0
            assert not stats.timed_out
            assert 0 < stats.busiest_cpu <= stats.cpu

            latency = gen.latency(rate=400.0, duration=0.2, drain=10)
            stats = latency.stats
            assert stats.received == stats.expected > 0, stats.failures
            assert stats.reordered == stats.miscounted == stats.disconnected == 0
            assert not stats.timed_out
            assert len(latency.latencies_us) == stats.received  # every member is a probe here
            gen.close()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_small_benchmark_against_our_server(tmp_path):
    _run_small(OurServer(log_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("ngircd") is None and not os.path.exists("/usr/sbin/ngircd"),
                    reason="ngircd is not installed")
def test_small_benchmark_against_ngircd(tmp_path):
    _run_small(NgircdServer(log_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_small_benchmark_against_the_relay(tmp_path):
    try:
        RelayServer.build()
    except RelayUnavailable as error:
        pytest.skip(str(error))
    _run_small(RelayServer(log_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_small_benchmark_against_two_cluster_nodes(tmp_path):
    """Clients spread over two nodes of one chat: every line crosses nodes, none is lost."""

    class Cluster(ClusterServer):
        def open_files(self) -> list[int]:
            return [len(os.listdir(f"/proc/{node.pid}/fd")) for node in self.nodes]

        def start(self) -> None:
            super().start()
            self.files_at_start = self.open_files()

    server = Cluster(2, log_dir=tmp_path)

    def both_nodes_have_clients() -> None:  # 5 clients: 3 on node 0, 2 on node 1
        opened = [now - then for now, then in zip(server.open_files(), server.files_at_start)]
        assert opened[0] >= 3 and opened[1] >= 2, opened

    _run_small(server, connected_check=both_nodes_have_clients)
