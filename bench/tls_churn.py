#!/usr/bin/env python3
"""Server memory after TLS churn (issue 8, item 7): RSS before, after and after an idle pause.

    python bench/tls_churn.py                        # 12,000 TLS connections, 400 at a time
    python bench/tls_churn.py --total 2000 --env MALLOC_ARENA_MAX=2

Starts ``chat_server.py`` as a subprocess on 127.0.0.1 with a throwaway certificate (trustme),
warms it up with one batch, reads its RSS from /proc/<pid>/status, then opens ``--total`` TLS
connections in batches of ``--batch``: each batch is opened at once, every connection
completes the handshake and registers (NICK/USER, waits for 001), then all of them send QUIT
and close (``--handshake-only``: handshake, then close).
Between batches it waits until the server's thread count is back down, so at most one batch
is live. It reads RSS again once every connection is gone, and once more after ``--idle``
seconds. Loopback only, bounded in count and time; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
CHAT_SERVER = ROOT / "chat_server.py"
STEP_TIMEOUT = 60.0  # no single batch or wait may take longer than this


def proc_status(pid: int) -> dict[str, int]:
    """The kB and count fields of /proc/<pid>/status that matter here."""
    wanted = {"VmRSS", "RssAnon", "RssFile", "VmSize", "VmData", "Threads"}
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in wanted:
                values[key] = int(rest.split()[0])
    return values


def wait_threads(pid: int, at_most: int, timeout: float) -> int:
    """Poll until the server has at most ``at_most`` threads; return the count seen last."""
    deadline = time.monotonic() + timeout
    while True:
        threads = proc_status(pid)["Threads"]
        if threads <= at_most or time.monotonic() > deadline:
            return threads
        time.sleep(0.02)


async def one_client(port: int, context: ssl.SSLContext, index: int, register: bool,
                     batch: dict) -> None:
    """One connection: handshake (and register), then stay until the whole batch is up."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                       server_hostname="127.0.0.1")
        if register:
            writer.write(f"NICK churn{index}\r\nUSER u 0 * :churn\r\n".encode())
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("closed before 001")
                if b" 001 " in line:
                    break
        batch["open"] += 1
        if batch["open"] == batch["size"]:
            batch["release"].set()
        await batch["release"].wait()
        if register:
            writer.write(b"QUIT :churn\r\n")  # then read until the server closes
            while await reader.read(4096):
                pass
    except BaseException:
        batch["release"].set()  # one failure ends the batch at once instead of at the timeout
        raise
    finally:
        # abort(), not close(): asyncio's TLS close waits up to 30 s for a close_notify that
        # the server, like most IRC servers, does not send (it sends ERROR and closes).
        if writer is not None:
            writer.transport.abort()


async def one_batch(port: int, context: ssl.SSLContext, first: int, size: int,
                    register: bool) -> None:
    """Open ``size`` connections at once, wait until all are up, then close them all."""
    batch = {"open": 0, "size": size, "release": asyncio.Event()}
    tasks = [asyncio.create_task(one_client(port, context, first + i, register, batch))
             for i in range(size)]
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), STEP_TIMEOUT)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {size} connections failed, first: {errors[0]!r}")


def start_server(folder: Path, env_overrides: dict[str, str],
                 extra: list[str]) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, **env_overrides)
    proc = subprocess.Popen(
        [sys.executable, str(CHAT_SERVER), "--port", "0", "--tls-port", "0",
         "--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem"),
         "--log-level", "WARNING", "--no-flood-control", "--max-clients", "100000", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    first = proc.stdout.readline()
    if "TLS on port" not in first:
        stop_server(proc)
        raise RuntimeError(f"server did not start: {first!r}")
    return proc, int(first.split("TLS on port ")[1].split(",")[0])


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def run(total: int, batch: int, idle: float, register: bool, env: dict[str, str],
        extra: list[str], quiet: bool = False) -> dict:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cert.private_key_pem.write_to_path(folder / "key.pem")
        cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        proc, port = start_server(folder, env, extra)
        try:
            pid = proc.pid
            idle_threads = proc_status(pid)["Threads"]
            started = proc_status(pid)
            # Warm-up: one batch, so lazily built things (the hub, codecs, the first thread
            # stacks) are in the baseline and only what grows with churn is counted.
            asyncio.run(one_batch(port, context, 0, min(batch, total), register))
            wait_threads(pid, idle_threads, STEP_TIMEOUT)
            baseline = proc_status(pid)
            began = time.monotonic()
            peak = baseline["VmRSS"]

            async def churn() -> int:
                nonlocal peak
                done = 0
                while done < total:
                    size = min(batch, total - done)
                    await one_batch(port, context, done, size, register)
                    done += size
                    # At most one batch live: wait for the server's reader threads to end.
                    await asyncio.to_thread(wait_threads, pid, idle_threads, STEP_TIMEOUT)
                    peak = max(peak, proc_status(pid)["VmRSS"])
                    if not quiet:
                        print(f"  {done:6d} connections, RSS {proc_status(pid)['VmRSS'] / 1024:6.1f} MB",
                              file=sys.stderr, flush=True)
                return done

            done = asyncio.run(churn())
            elapsed = time.monotonic() - began
            after = proc_status(pid)
            time.sleep(idle)  # a bench measuring what an idle server gives back, not a sync
            after_idle = proc_status(pid)
        finally:
            stop_server(proc)
    return {"connections": done, "batch": batch, "register": register, "env": env,
            "extra_args": extra, "seconds": round(elapsed, 1), "started": started,
            "baseline": baseline, "peak_rss_kb": peak, "after": after, "after_idle": after_idle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=12000, help="connections in all (max 50000)")
    parser.add_argument("--batch", type=int, default=400, help="connections open at once")
    parser.add_argument("--idle", type=float, default=6.0,
                        help="seconds idle before the last reading (the housekeeper ticks every 5 s)")
    parser.add_argument("--handshake-only", action="store_true", help="do not register, just handshake")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the server, e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--server-arg", action="append", default=[], help="extra server argument")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.total <= 50000 or not 0 < args.batch <= 1000:
        parser.error("--total must be 1..50000 and --batch 1..1000")
    env = dict(item.split("=", 1) for item in args.env)
    result = run(args.total, args.batch, args.idle, not args.handshake_only, env, args.server_arg)
    if args.json:
        print(json.dumps(result))
    else:
        mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
        print(f"{result['connections']} TLS connections, {args.batch} at a time, "
              f"{result['seconds']} s, env {env or '-'}")
        for name in ("started", "baseline", "after", "after_idle"):
            s = result[name]
            print(f"  {name:10s} RSS {mb(s['VmRSS']):>9s} (anon {mb(s['RssAnon']):>9s}) "
                  f"VmSize {mb(s['VmSize']):>9s} threads {s['Threads']}")
        print(f"  peak RSS between batches {mb(result['peak_rss_kb'])}; "
              f"after/baseline {result['after_idle']['VmRSS'] / result['baseline']['VmRSS']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
