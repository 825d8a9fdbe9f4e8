"""The fan-out engine under floods: readers that keep reading stay, stalled ones go, memory
stays bounded, and shutdown reaches every backlogged client. Real loopback sockets."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time

from irc_peer import Peer
from test_faults import wait_until
from test_hardening import TlsPeer, certificate, tls_server  # noqa: F401 -- fixtures

from ircchat.roomlog import SEGMENT_MAX

LINE_TEXT = "z" * 400


def stalled_member(server, nick: str) -> socket.socket:
    """A registered member that never reads (a small receive buffer, so it fills up early)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect, to count
    sock.connect(server.address)
    sock.sendall(f"NICK {nick}\r\nUSER s 0 * :never reads\r\n".encode())
    return sock


def flood(peer: Peer, count: int) -> threading.Thread:
    """Send ``count`` numbered 400-byte lines into #chat at once, from a thread."""
    data = "".join(f"PRIVMSG #chat :{i} {LINE_TEXT}\r\n" for i in range(count)).encode()
    thread = threading.Thread(target=peer.send_raw, args=(data,), daemon=True)
    thread.start()
    return thread


class FastReader:
    """Reads a peer's socket in big chunks and checks the flood's numbers come in order."""

    NUMBER = re.compile(rb"PRIVMSG #chat :(\d+) ")

    def __init__(self, peer: Peer) -> None:
        self.sock, self.buffer, self.next = peer.sock, peer._buffer, 0
        self.other: list[bytes] = []  # lines that are not the flood's

    def read_until(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.next < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"got {self.next} of {count} lines"
            self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 20)
            assert data, f"disconnected after {self.next} lines; last: {self.other[-3:]}"
            *lines, self.buffer = (self.buffer + data).split(b"\r\n")
            for line in lines:
                match = self.NUMBER.search(line)
                if match is None:
                    self.other.append(line)
                    continue
                assert int(match.group(1)) == self.next, f"line {match.group(1)} came after {self.next - 1}"
                self.next += 1


def test_a_fast_reader_gets_a_30000_line_flood_in_order_and_a_stalled_one_is_evicted(start_server):
    server = start_server(flood_rate=0, sendq_timeout=3.0)
    ann, bob, cat = Peer(server.address), Peer(server.address), Peer(server.address)
    for peer, nick in ((ann, "ann"), (bob, "bob"), (cat, "cat")):
        peer.register(nick)
    stalled = stalled_member(server, "stalled")
    bob.expect(r"^:stalled!\S+ JOIN ")
    cat.expect(r"^:stalled!\S+ JOIN ")
    sender = flood(ann, 30_000)  # 13 MB: far past what the kernel buffers for the stalled one
    other_failures: list[BaseException] = []

    def read_too() -> None:  # cat reads at the same time, in its own thread
        try:
            FastReader(cat).read_until(30_000, timeout=60)
        except BaseException as error:  # noqa: B036 -- reported by the test's own thread
            other_failures.append(error)

    other = threading.Thread(target=read_too, daemon=True)
    other.start()
    reader = FastReader(bob)
    reader.read_until(30_000, timeout=60)
    sender.join(30)
    other.join(60)
    assert not other_failures, other_failures
    assert any(b":stalled!" in line and b" QUIT :SendQ timeout" in line for line in reader.other) or \
        bob.expect(r"^:stalled!\S+ QUIT :SendQ timeout", timeout=10)
    ann.send("PRIVMSG #chat :after the flood")  # and everyone else carries on
    for peer in (bob, cat):
        peer.expect("PRIVMSG #chat :after the flood$")
    stalled.close()


def test_a_slow_reader_that_keeps_reading_stays_through_a_burst(start_server):
    # The client's kernel opens its window in steps (every 4 KB read here, 0.4 s), so the
    # timeout is well above that; the burst takes well above the timeout to drain.
    server = start_server(flood_rate=0, sendq_timeout=1.5)
    ann = Peer(server.address)
    ann.register("ann")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(server.address)
    slow.sendall(b"NICK slow\r\nUSER s 0 * :reads slowly\r\n")
    ann.expect(r"^:slow!\S+ JOIN ")
    # A kernel that buffers little for it, so that the burst waits in the server...
    conn = next(conn for conn in list(server._connections) if conn.user.nick == "slow")
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    count = 80  # ...35 KB: at 10 KB/s, much longer to drain than the timeout
    flood(ann, count).join(10)
    wait_until(lambda: any(conn.outbox.blocked for conn in list(server._connections)),
               what="the pump to wait for the slow reader")
    received, buffer, started = 0, b"", time.monotonic()
    slow.settimeout(5)
    while received < count:
        data = slow.recv(1024)
        assert data, f"the slow reader was disconnected after {received} lines: {buffer[-300:]}"
        buffer += data
        received += len(re.findall(rb"PRIVMSG #chat :\d+ ", buffer))
        buffer = buffer[buffer.rfind(b"\n") + 1:]
        time.sleep(0.1)  # this is the slow reader: 1 KB every 0.1 s, not a synchronisation
    assert time.monotonic() - started > 1.5 * 1.5  # it did lag well past the timeout
    slow.sendall(b"PING :still-here\r\n")
    tail = b""
    while b"still-here" not in tail:
        data = slow.recv(65536)
        assert data and b"ERROR" not in data, tail[-300:]
        tail += data
    slow.close()


def retained_backlog(server) -> int:
    """Bytes of #chat's log still held for its laggiest follower (whole segments)."""
    log = server.hub.channels["#chat"].log
    with server.hub.lock:
        cursors = [outbox.cursor for outbox in log.followers]
    segments = [cursor.seg for cursor in cursors if cursor.seg is not None]
    oldest = min(segments, key=lambda seg: seg.start, default=log.tail)
    total, seg = 0, oldest
    while seg is not None:
        total += len(seg.data)
        seg = seg.next
    return total


def test_memory_stays_under_the_room_cap_while_a_member_has_stalled(start_server):
    cap = 1 << 20
    server = start_server(flood_rate=0, room_backlog=cap, sendq_timeout=60)
    ann, bob = Peer(server.address), Peer(server.address)
    ann.register("ann")
    bob.register("bob")
    stalled = stalled_member(server, "stalled")
    bob.expect(r"^:stalled!\S+ JOIN ")
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], retained_backlog(server))
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sender = flood(ann, 20_000)  # 9 MB, nine times the cap
    reader = FastReader(bob)
    reader.read_until(20_000, timeout=60)
    sender.join(30)
    done.set()
    sampler.join(5)
    assert any(b":stalled!" in line and b" QUIT :Backlog exceeded" in line for line in reader.other) or \
        bob.expect(r"^:stalled!\S+ QUIT :Backlog exceeded", timeout=10)
    # The cap, plus the segments it straddles and the line each waiting sender appended.
    assert peak[0] <= cap + 4 * SEGMENT_MAX, f"retained {peak[0]} bytes"
    stalled.close()


def test_shutdown_reaches_backlogged_clients_with_unread_input(start_server):
    # A flood burst of 1000 lines, then 1 a second: each client's input beyond that stays
    # unread in the server's kernel, which is what made a plain close reset connections.
    server = start_server(flood_burst=1000, flood_rate=1)
    ann = Peer(server.address)
    ann.register("ann")
    clients = []
    for i in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        sock.sendall(f"NICK back{i}\r\nUSER b 0 * :backlogged\r\n".encode() + b"PING :x\r\n" * 2000)
        clients.append(sock)
    joined: set[str] = set()
    while len(joined) < 20:  # they register concurrently: any order
        joined.add(ann.expect(r"^:back\d+!\S+ JOIN ").nick)
    ann.send(*(f"PRIVMSG #chat :{i} {LINE_TEXT}" for i in range(998)))  # 400 KB for each of them
    ann.sync()
    results: dict[int, bytes] = {}

    def read_all(i: int, sock: socket.socket) -> None:
        sock.settimeout(10)
        tail = b""
        try:
            while data := sock.recv(1 << 20):
                tail = (tail + data)[-2000:]
        except OSError as error:
            tail += f"<{error}>".encode()
        results[i] = tail
        sock.close()

    readers = [threading.Thread(target=read_all, args=(i, sock)) for i, sock in enumerate(clients)]
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(30)
    stopper.join(30)
    missed = {i: tail[-200:] for i, tail in results.items() if b"ERROR :Closing Link" not in tail}
    assert len(results) == 20 and not missed, missed


def test_senders_that_also_read_get_every_other_line_in_order_and_never_their_own(start_server):
    # Each sender's own lines sit in the log it reads, to be skipped: a regression here once
    # left a sender's cursor stopped short of the room's end.
    server = start_server(flood_rate=0)
    peers = [Peer(server.address) for _ in range(8)]
    for i, peer in enumerate(peers):
        peer.register(f"user{i}")
    for peer in peers:
        peer.sync()
    senders, per_sender = peers[:4], 5000
    threads = [threading.Thread(target=peer.send_raw, daemon=True, args=("".join(
        f"PRIVMSG #chat :{peer.nick} {n} {'x' * 24}\r\n" for n in range(per_sender)).encode(),))
        for peer in senders]
    for thread in threads:
        thread.start()
    pattern = re.compile(rb"PRIVMSG #chat :(user\d) (\d+) ")
    for peer in peers:
        expected = {sender.nick.encode(): 0 for sender in senders if sender is not peer}
        buffer, deadline = peer._buffer, time.monotonic() + 60
        while any(n < per_sender for n in expected.values()):
            peer.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = peer.sock.recv(1 << 20)
            assert data and time.monotonic() < deadline, f"{peer.nick} stopped at {expected}"
            *lines, buffer = (buffer + data).split(b"\r\n")
            for line in lines:
                match = pattern.search(line)
                if match:
                    sender, n = match.group(1), int(match.group(2))
                    assert sender in expected, f"{peer.nick} got its own line {n}"
                    assert n == expected[sender], f"{peer.nick} got {sender} {n}, not {expected[sender]}"
                    expected[sender] += 1
    for thread in threads:
        thread.join(10)


def test_a_member_that_parts_the_room_it_follows_and_rejoins_gets_each_line_once(connect):
    ann, bob = connect("ann"), connect("bob")
    ann.send("JOIN #side")
    ann.expect(r"^:ann!\S+ JOIN :#side$")
    ann.send("PART #chat :brb")
    assert ann.expect(r"PART #chat").params[-1] == "brb"
    bob.expect(r"^:ann!\S+ PART #chat :brb$")
    bob.send("PRIVMSG #chat :while you were out")
    bob.sync()  # handled before ann is back
    ann.send("JOIN #chat")
    ann.expect(r"^:ann!\S+ JOIN :#chat$")
    ann.expect(r" 366 ann #chat ")
    bob.send("PRIVMSG #chat :welcome back", "PRIVMSG ann :privately")
    bob.sync()
    ann.send("NICK ann2")
    lines = ann.collect_until(r"^:ann!\S+ NICK :ann2$")
    assert not [line for line in ann.seen if "while you were out" in line]
    assert [line for line in lines if "welcome back" in line] == [lines[0]]
    assert [line for line in lines if "privately" in line] == [lines[1]]
    bob.expect(r"^:ann!\S+ NICK :ann2$")  # once, though they share two channels
    assert not [line for line in bob.sync() if " NICK " in line]


def test_a_tls_member_gets_room_lines_one_by_one_in_order_beside_followers(tls_server, certificate):
    # TLS members follow no log (their bytes are encrypted each their own way): this is the
    # per-member path, mixed in the same room with plain members that follow the log.
    context = ssl.create_default_context(cafile=str(certificate / "ca.pem"))
    secure = TlsPeer(tls_server.tls_address, context)
    secure.register("secure")
    ann, bob = Peer(tls_server.address), Peer(tls_server.address)
    ann.register("ann")
    bob.register("bob")
    secure.expect(r"^:bob!\S+ JOIN ")
    count = 15  # this server has flood control on: within the burst
    ann.send(*(f"PRIVMSG #chat :{i} {LINE_TEXT}" for i in range(count)))
    ann.send("PRIVMSG secure :just you")
    for peer in (secure, bob):
        for i in range(count):
            assert peer.expect(r"PRIVMSG #chat :").params[-1].startswith(f"{i} ")
    assert secure.expect(r"PRIVMSG secure :").params[-1] == "just you"
    secure.send("PRIVMSG #chat :from the TLS side")
    for peer in (ann, bob):
        peer.expect("PRIVMSG #chat :from the TLS side$")
    assert not [line for line in secure.sync() if "from the TLS side" in line]
