"""Memory after TLS churn (issue 8, item 7): RSS goes back down once the connections are gone.

A real server subprocess with a throwaway certificate; a few thousand TLS connections, a
batch at a time (handshake, then close), from this process; its RSS read from /proc. Before
the fix every closed connection kept its TLS session until the cyclic GC came round, and glibc
kept what was freed: RSS stayed near its peak, 1.85x the baseline here (bench/tls_churn.py:
86 MB after 12,000 connections against 26 MB at start; now 40 MB).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time

import pytest
import trustme

from bench.tls_churn import one_batch, proc_status, start_server, stop_server, wait_threads


def _on_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


# The bound was measured with glibc's allocator, and the server trims the heap only there.
needs_glibc = pytest.mark.skipif(not _on_glibc() or not os.path.exists("/proc/self/status"),
                                 reason="glibc and /proc only")

WARM_UP = 50  # connections before the baseline: lazily built state is not churn
CHURN_SECONDS = 7.0  # churn stops after this long, whatever the count reached
CHURN_MAX = 3000  # ... or after this many connections
BATCH = 200  # connections open at once
ALLOWED = 1.5  # RSS after churn / baseline RSS (the issue's bound)
SETTLE = 8.0  # seconds the server gets to hand memory back after the churn


def rss_kb(pid: int) -> int:
    return proc_status(pid)["VmRSS"]


def wait_rss_at_most(pid: int, limit_kb: float, timeout: float) -> int:
    """Poll until the server's RSS is at most ``limit_kb``; return the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        rss = rss_kb(pid)
        if rss <= limit_kb or time.monotonic() > deadline:
            return rss
        time.sleep(0.1)


@pytest.mark.slow
@needs_glibc
@pytest.mark.timeout(45)
def test_rss_returns_within_bound_after_thousands_of_tls_connections(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    # A short ping timeout only makes the housekeeper tick more often (every 0.5 s): no
    # connection here lives long enough to be pinged.
    proc, port = start_server(tmp_path, {}, ["--ping-timeout", "2"])
    try:
        pid = proc.pid
        idle_threads = proc_status(pid)["Threads"]
        asyncio.run(one_batch(port, context, 0, WARM_UP, False))
        assert wait_threads(pid, idle_threads, 10) <= idle_threads
        # The baseline is the lowest RSS in a couple of housekeeping ticks after the warm-up:
        # a fixed server may hand back what the warm-up freed, which only lowers the bar.
        baseline = rss_kb(pid)
        settle_until = time.monotonic() + 1.5
        while time.monotonic() < settle_until:
            baseline = min(baseline, rss_kb(pid))
            time.sleep(0.1)

        async def churn() -> int:
            done, stop_at = 0, time.monotonic() + CHURN_SECONDS
            while done < CHURN_MAX and time.monotonic() < stop_at:
                await one_batch(port, context, WARM_UP + done, BATCH, False)
                done += BATCH
                # One batch live at a time: wait for the server's reader threads to end.
                await asyncio.to_thread(wait_threads, pid, idle_threads, 10)
            return done

        done = asyncio.run(churn())
        peak = rss_kb(pid)
        assert done >= 1000, f"only {done} connections in {CHURN_SECONDS} s: too slow to tell"
        after = wait_rss_at_most(pid, baseline * ALLOWED, SETTLE)
        print(f"baseline {baseline} kB, end of churn {peak} kB, after {after} kB "
              f"({after / baseline:.2f}x) after {done} connections")
        assert after <= baseline * ALLOWED, (
            f"RSS {after / 1024:.1f} MB after {done} TLS connections ({BATCH} at a time), "
            f"{after / baseline:.2f}x the baseline of {baseline / 1024:.1f} MB "
            f"(at the end of the churn: {peak / 1024:.1f} MB)")
    finally:
        stop_server(proc)


def test_heap_trimmer_is_a_logged_no_op_without_glibc(monkeypatch, caplog):
    import ircchat.network

    def no_glibc(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name!r}")  # as on musl or macOS

    monkeypatch.setattr(ircchat.network.os, "confstr", no_glibc)
    with caplog.at_level("DEBUG", logger="chat_server"):
        trimmer = ircchat.network.HeapTrimmer()
    assert "malloc_trim unavailable" in caplog.text
    assert not trimmer.maybe_trim(5, 100.0)


@needs_glibc
def test_heap_trimmer_trims_only_after_connections_ended_and_at_most_once_a_second():
    from ircchat.network import MEMORY_TRIM_INTERVAL, HeapTrimmer

    trimmer = HeapTrimmer()
    assert not trimmer.maybe_trim(0, 100.0)  # nothing ended yet
    assert trimmer.maybe_trim(3, 100.0)
    assert not trimmer.maybe_trim(3, 200.0)  # none ended since
    assert not trimmer.maybe_trim(9, 100.0 + MEMORY_TRIM_INTERVAL / 2)  # too soon
    assert trimmer.maybe_trim(9, 100.0 + MEMORY_TRIM_INTERVAL)
