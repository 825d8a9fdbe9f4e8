#!/usr/bin/env python3
"""Profile our server with py-spy under the bench's own load, and print where the time goes.

    python bench/profile.py --members 2000 --messages 1000     # connect phase, then fan-out

py-spy attaches to the server process while the load generator runs one phase, sampling
only the thread that holds the GIL (``--gil``): in a threaded CPython server that is where
the CPU goes, and threads blocked in ``recv`` are left out. With thousands of threads,
py-spy falls behind at high rates, so the default rate is low and the phases long.
The raw stacks are kept under bench/results/ and summarised as self and inclusive shares.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import LoadGenerator  # noqa: E402
from bench.servers import OurServer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def summarise(path: Path, top: int) -> str:
    """Self and inclusive sample shares per function, from py-spy's raw (collapsed) output."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = []
        for frame in stack.split(";")[1:]:  # the first entry names the thread
            name, _, where = frame.partition(" (")
            frames.append(f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})")
        if frames:
            own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    lines = [f"{path.name}: {total} samples"]
    if total:
        lines.append("  self:")
        lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
        lines.append("  inclusive:")
        lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=1000, help="fan-out: M per sender")
    parser.add_argument("--rate", type=int, default=25, help="py-spy samples per second")
    parser.add_argument("--seconds", type=float, default=8, help="py-spy duration per phase")
    parser.add_argument("--ours-rev", default="HEAD", help="git revision of chat_server.py to profile")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--history", action="store_true", help="with room history on (a fresh file)")
    args = parser.parse_args(argv)

    RESULTS.mkdir(parents=True, exist_ok=True)
    script = OurServer.snapshot(args.ours_rev, RESULTS / "snapshot")
    server = OurServer(script=script, log_dir=RESULTS / "logs", history=args.history)
    server.start()
    outputs = []

    def record(name: str) -> subprocess.Popen:
        out = RESULTS / f"profile-{name}.txt"
        outputs.append(out)
        return subprocess.Popen(
            ["py-spy", "record", "--pid", str(server.pid), "--gil", "--nonblocking",
             "--rate", str(args.rate), "--duration", str(int(args.seconds)),
             "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    try:
        with LoadGenerator(server.host, server.port, 2, "p", server.autojoin) as gen:
            spy = record("connect")
            started = time.monotonic()
            result = gen.connect(args.members, 10, 300)
            print(f"connect {args.members}: {time.monotonic() - started:.2f} s, {result.stats.ready} ready")
            spy.wait()
            spy = record("fanout")
            cpu = server.cpu_seconds()
            result = gen.fanout(args.messages, timeout=300)
            stats = result.stats
            print(f"fan-out: {stats.received:,} of {stats.expected:,} in {result.elapsed:.2f} s ="
                  f" {stats.received / result.elapsed:,.0f}/s; server"
                  f" {(server.cpu_seconds() - cpu) / result.elapsed:.2f} cores, generator"
                  f" {stats.cpu / result.elapsed:.2f} cores")
            spy.wait()
            server.stop()
            gen.close()
    finally:
        server.stop()
    for out in outputs:
        if out.exists():
            print(summarise(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
