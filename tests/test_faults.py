"""Fault and fuzz tests against a live server: hostile input, churn, and connection storms.

Well-behaved peers chat throughout; the checks are that the server stays up, keeps answering,
delivers every well-behaved message in order, and gives back every thread and descriptor.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ircchat.network import ChatServer, Connection
from ircchat.state import ServerConfig
from irc_peer import Peer

SOAK_SECONDS = float(os.environ.get("CHAT_SOAK_SECONDS", "3"))
SOAK_CLIENTS = int(os.environ.get("CHAT_SOAK_CLIENTS", "400"))


def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling server state that offers no event to wait on


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- hostile input ---------------------------------------------------------------------------

words = st.sampled_from(
    ["NICK", "USER", "PASS", "CAP", "JOIN", "PART", "PRIVMSG", "NOTICE", "NAMES", "TOPIC", "WHO",
     "WHOIS", "MODE", "PING", "PONG", "MOTD", "LUSERS", "QUIT", "KICK", "@tag=1", ":prefix", "#chat",
     "WHOWAS", "USERHOST", "ISON", "LIST", "AWAY", "HELP", "VERSION", "%tcuhnfdar,743", "*!*@*",
     "#x", "0", "*", ":", "::", "good_a", "good_b", "LS", "END", "REQ", ",", "+i", "-w", "\x01ACTION"]
)
text_line = st.lists(st.one_of(words, st.text(max_size=12)), min_size=1, max_size=8).map(" ".join)
hostile_chunk = st.one_of(
    text_line.map(lambda line: line.encode("utf-8", "replace") + b"\r\n"),
    st.binary(max_size=300),  # raw bytes: invalid UTF-8, NULs, stray CR/LF
    st.integers(513, 5000).map(lambda n: b"PRIVMSG #chat :" + b"x" * n + b"\r\n"),  # oversize
    st.just(b"\r\n\n\r\n"),
)


@pytest.fixture(scope="module")
def fuzz_target():
    server = ChatServer(ServerConfig(flood_burst=100, flood_rate=1000), "127.0.0.1", 0)
    server.start()
    good_a, good_b = Peer(server.address), Peer(server.address)
    good_a.register("good_a")
    good_b.register("good_b")
    yield server, good_a, good_b
    server.shutdown()


@given(chunks=st.lists(hostile_chunk, min_size=1, max_size=12), split=st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_client_cannot_disturb_the_others(fuzz_target, chunks, split):
    server, good_a, good_b = fuzz_target
    stream = b"".join(chunks)
    cuts = sorted(split.randint(0, len(stream)) for _ in range(3))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    hostile = socket.create_connection(server.address)
    try:
        for i, piece in enumerate(pieces):  # good traffic interleaved with the hostile stream
            try:
                hostile.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may have dropped the hostile client already (QUIT, ...)
            if i < 3:
                good_a.send(f"PRIVMSG #chat :good {i}")
    finally:
        hostile.close()
    for i in range(3):
        message = good_b.expect(r"^:good_a!\S+ PRIVMSG #chat :good \d$")
        assert message.params[-1] == f"good {i}"
    good_a.sync("alive")  # raises unless the PONG comes: the server still answers
    good_b.sync("alive")


# -- churn (soak) ------------------------------------------------------------------------------


class Churner:
    """A client that connects, may register and talk, then leaves in one of several ways."""

    WAYS = ("quit", "reset", "half_open", "never_registers", "close")

    def __init__(self, address, n: int, rng: random.Random) -> None:
        self.way = rng.choice(self.WAYS)
        self.sock = socket.create_connection(address, timeout=5)
        if self.way != "never_registers":
            self.sock.sendall(f"NICK churn{n}\r\nUSER c 0 * :churn\r\nPRIVMSG #chat :churner {n} says hi\r\n".encode())
        if self.way == "half_open":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def leave(self) -> None:
        if self.way == "quit":
            self.sock.sendall(b"QUIT :done\r\n")
        elif self.way == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


@pytest.mark.soak
def test_soak_churn_loses_nothing_and_leaks_nothing():
    baseline_threads, baseline_fds = threading.active_count(), open_fds()
    server = ChatServer(
        ServerConfig(ping_interval=3.0, ping_timeout=3.0, register_timeout=1.0, sendq=32 * 1024,
                     flood_rate=0),
        "127.0.0.1", 0,
    )
    server.start()
    rng = random.Random(1234)
    stayers = [Peer(server.address) for _ in range(4)]
    for i, peer in enumerate(stayers):
        peer.register(f"stayer{i}")
    sent = {peer.nick: 0 for peer in stayers}
    received = {peer.nick: {other.nick: 0 for other in stayers if other is not peer} for peer in stayers}

    def handle(peer: Peer, line: str) -> None:
        """Answer PINGs; check that each other stayer's messages come complete and in order."""
        if line.startswith("PING "):
            peer.send("PONG " + line[5:])
        elif " PRIVMSG #chat :stayer" in line:
            sender, n = line.split(" :", 1)[1].split()
            assert received[peer.nick][sender] == int(n), f"{peer.nick} lost or reordered {sender}"
            received[peer.nick][sender] += 1

    def drain(peer: Peer) -> None:
        """Handle whatever has arrived for ``peer``, without waiting."""
        peer.sock.setblocking(False)  # (MSG_DONTWAIT alone would still wait out a timeout)
        try:
            while True:
                data = peer.sock.recv(65536)
                assert data, f"{peer.nick} was disconnected"
                peer._buffer += data
        except BlockingIOError:
            pass  # all read
        finally:
            peer.sock.settimeout(5)
        while b"\n" in peer._buffer:
            raw, peer._buffer = peer._buffer.split(b"\n", 1)
            handle(peer, raw.decode("utf-8", "replace").rstrip("\r"))

    churners: list[Churner] = []
    clients_made = 0
    deadline = time.monotonic() + SOAK_SECONDS
    while time.monotonic() < deadline and clients_made < SOAK_CLIENTS:
        for _ in range(10):
            churners.append(Churner(server.address, clients_made, rng))
            clients_made += 1
        for peer in stayers:
            peer.send(f"PRIVMSG #chat :{peer.nick} {sent[peer.nick]}")
            sent[peer.nick] += 1
            drain(peer)
        leaving = [c for c in churners if rng.random() < 0.5 and c.way != "half_open"]
        for churner in leaving:
            churner.leave()
            churners.remove(churner)
    # Let everything in flight arrive, stayer by stayer (the others' PINGs are answered
    # meanwhile, so that a slow read here does not get anyone dropped).
    settle = time.monotonic() + 20
    for peer in stayers:
        while any(received[peer.nick][sender] < count for sender, count in sent.items() if sender != peer.nick):
            line = peer.read_line(settle)
            assert line is not None, f"{peer.nick} was disconnected"
            handle(peer, line)
            for other in stayers:
                drain(other)
    for churner in churners:
        churner.leave()
    for peer in stayers:
        peer.close()
    wait_until(lambda: not server._connections, what="every connection to be torn down")
    server.shutdown()
    wait_until(lambda: threading.active_count() <= baseline_threads, what="threads back to baseline")
    wait_until(lambda: open_fds() <= baseline_fds, what="descriptors back to baseline")
    gc.collect()
    # A leaked User keeps its Connection alive too (through ``deliver``), so this finds both.
    leftovers = [obj for obj in gc.get_objects() if isinstance(obj, Connection) and obj.server is server]
    assert not leftovers, f"{len(leftovers)} connections still alive"
    assert clients_made >= min(100, SOAK_CLIENTS)
    print(f"soak: {clients_made} churning clients, {sum(sent.values())} stayer messages checked")


# -- connection storm ------------------------------------------------------------------------


def test_connection_storm_leaves_registered_users_served(start_server):
    server = start_server(register_timeout=1.0)
    ann, bob = Peer(server.address), Peer(server.address)
    ann.register("ann")
    bob.register("bob")
    storm: list[socket.socket] = []
    stop = threading.Event()

    def storm_loop() -> None:
        for n in range(600):
            if stop.is_set():
                return
            sock = socket.create_connection(server.address, timeout=5)
            if n % 3 == 0:
                sock.close()  # connect and go
            else:
                storm.append(sock)  # connect and never register
                if n % 3 == 2:
                    sock.sendall(b"NICK half\r\n")

    thread = threading.Thread(target=storm_loop)
    thread.start()
    try:
        for i in range(20):  # the registered users keep talking through the storm
            ann.send(f"PRIVMSG #chat :through the storm {i}")
            assert bob.expect(r"PRIVMSG #chat :through the storm").params[-1] == f"through the storm {i}"
        thread.join(30)
        ann.sync("after")
        # The lurkers are dropped for not registering; registered users stay.
        wait_until(lambda: len(server._connections) == 2, timeout=15, what="lurkers to be dropped")
        bob.send("PRIVMSG ann :still here")
        ann.expect("PRIVMSG ann :still here$")
    finally:
        stop.set()
        thread.join(30)
        for sock in storm:
            sock.close()
