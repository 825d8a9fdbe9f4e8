#!/usr/bin/env python3
"""Cluster mode against one process, behind the same generator: ``docs/cluster-benchmarks.md``.

    python bench/cluster.py            # relay, ours+history, cluster-1, -2 and -3 at N=100, 500
    python bench/cluster.py --quick    # a tiny run, written under bench/results/

The cells are ``run.py``'s (``run.measure``): a fresh server (or a fresh redis-server and K
fresh nodes) per cell, N clients spread over the nodes (client i on node i mod K, so the 4
senders are on different nodes and every line crosses nodes), then the fan-out phase
(deliveries/s) and the latency phase (200 messages/s offered into the room). The reference is
``ours+history``: one process storing its history in SQLite, as cluster nodes store theirs in
Redis. The relay shows the generator's ceiling in the same run.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report, run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ["--servers", "relay,ours+history,cluster-1,cluster-2,cluster-3", "--sizes", "100,500", "--big", "0"]
REFERENCE = "ours+history"
COLUMNS = [
    ("deliveries_per_s", "fan-out deliveries/s", "{:,.0f}"),
    ("fanout_server_cores", "fan-out: nodes + Redis (cores)", "{:.2f}"),
    ("fanout_redis_cores", "fan-out: Redis alone (cores)", "{:.2f}"),
    ("fanout_gen_busiest", "fan-out: busiest generator process (cores)", "{:.2f}"),
    ("fanout_other_cores", "fan-out: other work (cores)", "{:.2f}"),
    ("p50_ms", "p50 (ms)", "{:.2f}"),
    ("p99_ms", "p99 (ms)", "{:.2f}"),
    ("latency_redis_cores", "latency: Redis (cores)", "{:.3f}"),
    ("kb_per_client", "idle RSS / client (KB)", "{:.1f}"),
]


def messages_per_redis_core(cells: list[dict]) -> list[str]:
    """What one Redis core carries, from the fan-out phases: messages/s over Redis's cores."""
    lines = []
    for (server, n), group in sorted(report.group(cells).items()):
        redis = report.median(group, "fanout_redis_cores")
        deliveries = report.median(group, "deliveries_per_s")
        if not server.startswith("cluster-") or not redis or not deliveries:
            continue
        messages = deliveries / (n - 1)  # every message reaches the N-1 members but its sender
        lines.append(f"- {server}, N={n}: {messages:,.0f} messages/s into the room with Redis at"
                     f" {redis:.2f} cores, so about {messages / redis:,.0f} messages/s per Redis core.")
    return lines


def reading(cells: list[dict]) -> list[str]:
    """What the figures say about more nodes, computed from the fan-out phases."""
    groups = report.group(cells)
    lines = []
    per_message = {}
    for n in sorted({n for _, n in groups}):
        one = groups.get(("cluster-1", n))
        if not one:
            continue
        nodes = (report.median(one, "fanout_server_cores") or 0) - (report.median(one, "fanout_redis_cores") or 0)
        messages = (report.median(one, "deliveries_per_s") or 0) / (n - 1)
        if nodes > 0 and messages > 0:
            per_message[n] = nodes / messages * 1e6
            lines.append(f"- One node, N={n}: {messages:,.0f} messages/s with the node at {nodes:.2f} cores: "
                         f"{per_message[n]:.0f} µs of node CPU per message, its {n - 1} deliveries included.")
    for (server, n), group in sorted(groups.items()):
        if server.startswith("cluster-") and server != "cluster-1":
            busy = sum(report.median(group, key) or 0 for key in
                       ("fanout_server_cores", "fanout_gen_cores", "fanout_other_cores"))
            lines.append(f"- {server}, N={n}: nodes, Redis and the generator used {busy:.2f} of the machine's 2 cores.")
    if len(per_message) >= 2:
        (n1, t1), (n2, t2) = min(per_message.items()), max(per_message.items())
        per_delivery = (t2 - t1) / (n2 - n1)  # µs: the cost a member adds to a message
        fixed = t1 - per_delivery * (n1 - 1)  # µs: a message's own cost on a node, whoever is there
        redis = [report.median(group, "fanout_redis_cores") for (server, _), group in groups.items()
                 if server.startswith("cluster-")]
        redis = [cores for cores in redis if cores]
        lines += ["", f"Fitting the two: about {fixed:.0f} µs per message on a node whatever its members, and "
                  f"{per_delivery:.2f} µs per delivery. Every node reads every event of the chat (one stream) and "
                  "delivers it to its own members, so the per-message part is paid by every node, and caps the chat's "
                  f"message rate at about {1e6 / fixed:,.0f} messages/s per node core however many nodes there are. "
                  "More nodes share the connections and their deliveries, not the messages: on a machine with a core "
                  "per node, a third node would hold half as many users again as two, at the same message rate. On "
                  "these 2 cores the nodes share the cores one node used (the lines above), so two or three nodes "
                  "cannot add throughput here."
                  + (f" Redis is not the limit: it was at {min(redis):.2f}-{max(redis):.2f} cores in these phases "
                     "(per-core figures below)." if redis else "")]
    return lines


def write(path: Path, cells: list[dict], args, elapsed: float, argv: list[str], date: str) -> None:
    machine = run.machine_info()
    out = [
        "# Cluster mode: one process against nodes sharing one Redis",
        "",
        "Measured by `python bench/cluster.py` "
        f"({' '.join(argv) or 'no arguments'}) on {date}; "
        f"{machine['CPU']}, {machine['memory']}, Python {machine['Python']}. "
        f"Whole run: {elapsed / 60:.1f} minutes. Medians of {args.repeats} runs per server and N "
        "(plus extra runs where every run shared the machine with other work).",
        "",
        "Servers: `relay` (the generator's ceiling), `ours+history` (one process, history in"
        " SQLite: the reference), `cluster-K` (K nodes of `chat_server.py --redis` on one"
        " `redis-server --save '' --appendonly no`, history in Redis). Clients are spread over"
        " the nodes: client i on node i mod K, so with K > 1 the 4 senders sit on different nodes"
        " and most deliveries cross nodes. CPU figures are in cores (CPU seconds / wall seconds);"
        " a cluster's include every node and Redis. Everything runs on the same 2 cores as the"
        " generator: K nodes share them, they do not add any.",
        "",
        report.medians_table(cells, COLUMNS),
        "",
    ]
    for k in sorted({cell["server"] for cell in cells if cell["server"].startswith("cluster-")}):
        out += [f"## {k} against {REFERENCE}", "", report.ratios_table(cells, REFERENCE, k), ""]
    out += ["## What more nodes would add", "", *reading(cells), ""]
    out += ["## What one Redis core carries", "", *messages_per_redis_core(cells), ""]
    out += ["## The generator's ceiling", "", report.ceiling_table(cells), ""]
    path.write_text("\n".join(out))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = run.RESULTS / "cluster-quick.md" if "--quick" in argv else ROOT / "docs" / "cluster-benchmarks.md"
    args = run.parse_args([*DEFAULTS, "--out", str(out), *argv])
    started = time.monotonic()
    run.loadgen.raise_fd_limit()
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    script, _ = run.ours_script(args.ours_rev)
    servers = run.make_servers(args.servers.split(","), args.extra_server, run.RESULTS / "logs", script)
    if args.report_from:  # only rewrite the report from a run's raw results
        data = json.loads(args.report_from.read_text())
        write(args.out, data["cells"], args, data["elapsed"], data["argv"], data["date"])
        print(f"wrote {args.out}")
        return 0
    cells = run.measure(servers, args)
    elapsed = time.monotonic() - started
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = run.RESULTS / f"cluster-raw-{stamp}.json"
    date = run.machine_info()["date"]
    raw.write_text(json.dumps({"cells": cells, "elapsed": elapsed, "argv": argv, "date": date}, default=str, indent=1))
    write(args.out, cells, args, elapsed, argv, date)
    print(f"wrote {args.out}")
    bad = sum(c["lost"] + c.get("miscounted", 0) + c["reordered"] + c["disconnected"] for c in cells)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
