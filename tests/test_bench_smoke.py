"""A tiny run of the benchmark harness (bench/): correctness only, never timing.

The load generator's checker is tested first on crafted chunks (a lost, a duplicated and a
reordered line must each be caught), then the whole harness runs against a real server with
5 clients: everything sent must arrive, in order, at every other member.
"""

from __future__ import annotations

import os
import shutil
from array import array

import pytest

from bench import loadgen
from bench.loadgen import SENDERS, Client, LoadGenerator, Worker, message_text
from bench.servers import NgircdServer, OurServer


def _line(sender: int, seq: int) -> bytes:
    text = message_text(sender, seq, 123456789)
    return f":s{sender}!~u@127.0.0.1 PRIVMSG #chat :{text}\r\n".encode()


def _checker() -> tuple[Worker, Client, list[list[int]]]:
    worker = Worker(0, 1, array("q", [0] * SENDERS), "127.0.0.1", 1, "t", True)
    client = Client(idx=SENDERS, pos=0, nick="t00004")
    client.state = loadgen.READY
    counts = [[0] for _ in range(SENDERS)]
    return worker, client, counts


def test_checker_accepts_interleaved_in_order_lines():
    worker, client, counts = _checker()
    chunk = _line(0, 0) + _line(1, 0) + _line(0, 1) + _line(2, 0) + _line(1, 1)
    worker._measured(client, chunk, counts, timed=True)
    worker._measured(client, _line(0, 2), counts, timed=False)
    assert worker.stats.received == 6
    assert worker.stats.reordered == 0
    assert client.expect == [3, 2, 1, 0]
    assert [c[0] for c in counts] == [3, 2, 1, 0]
    assert len(worker.lat) == 5


@pytest.mark.parametrize(
    "seqs", [[0, 2], [0, 0, 1], [1, 0], [0, 2, 1]], ids=["lost", "duplicated", "swapped", "reordered"]
)
def test_checker_catches_loss_duplication_and_reordering(seqs):
    worker, client, counts = _checker()
    worker._measured(client, b"".join(_line(3, seq) for seq in seqs), counts, timed=False)
    assert worker.stats.reordered == 1


def test_checker_catches_a_gap_between_chunks():
    worker, client, counts = _checker()
    worker._measured(client, _line(1, 0) + _line(1, 1), counts, timed=False)
    worker._measured(client, _line(1, 3), counts, timed=False)
    assert worker.stats.reordered == 1


def _run_small(server, members: int = 5, per_sender: int = 40) -> None:
    server.start()
    try:
        with LoadGenerator(server.host, server.port, workers=2, nick_prefix="smk",
                           autojoin=server.autojoin) as gen:
            connected = gen.connect(members, wave=4, timeout=20)
            assert connected.stats.ready == members, connected.stats.failures
            assert connected.stats.disconnected == 0

            fanout = gen.fanout(per_sender, window=16, timeout=20)
            stats = fanout.stats
            assert stats.sent == SENDERS * per_sender
            assert stats.expected == SENDERS * per_sender * (members - 1)
            assert stats.received == stats.expected, stats.failures
            assert stats.reordered == 0 and stats.disconnected == 0 and not stats.timed_out

            latency = gen.latency(rate=400.0, duration=0.2, drain=10)
            stats = latency.stats
            assert stats.received == stats.expected > 0, stats.failures
            assert stats.reordered == 0 and stats.disconnected == 0 and not stats.timed_out
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
