"""Turn measured cells into medians, ratios, ``docs/benchmarks.md`` and the PNG plot.

A *cell* is one run of every phase against one server at one room size N; ``run.py`` makes
them and this module only reads them: every number written here comes from a cell.
"""

from __future__ import annotations

import statistics
from pathlib import Path

CEILING = "relay"  # the calibration target: what it reaches is the generator's ceiling
GENERATOR_BOUND = 0.9  # cores: a generator process this busy is the bottleneck, not the server
SHARED = 0.25  # cores used by other work on the machine during a phase: the figure is low

# (key in a cell, column title, format) for the main table
SPREAD = {"deliveries_per_s", "p99_ms"}  # columns that also show (min-max) over the runs
# key -> (threshold, word): a median at or above it is marked; so are single runs above it
MARKS = {
    "fanout_gen_busiest": (GENERATOR_BOUND, "generator-bound"),
    "fanout_other_cores": (SHARED, "shared"),
}
COLUMNS = [
    ("connect_s", "connect+register all (s)", "{:.2f}"),
    ("kb_per_client", "idle RSS / client (KB)", "{:.1f}"),
    ("rss_mb", "idle RSS (MB)", "{:.1f}"),
    ("deliveries_per_s", "fan-out deliveries/s", "{:,.0f}"),
    ("fanout_gen_busiest", "fan-out: busiest generator process (cores)", "{:.2f}"),
    ("fanout_other_cores", "fan-out: other work on the machine (cores)", "{:.2f}"),
    ("p50_ms", "p50 (ms)", "{:.2f}"),
    ("p99_ms", "p99 (ms)", "{:.2f}"),
    ("max_ms", "max (ms)", "{:.2f}"),
]
CPU_COLUMNS = [
    ("connect_server_cores", "connect: server", "{:.2f}"),
    ("connect_gen_cores", "connect: generator", "{:.2f}"),
    ("fanout_server_cores", "fan-out: server", "{:.2f}"),
    ("fanout_gen_cores", "fan-out: generator", "{:.2f}"),
    ("fanout_gen_busiest", "fan-out: busiest generator process", "{:.2f}"),
    ("latency_server_cores", "latency: server", "{:.2f}"),
    ("latency_gen_cores", "latency: generator", "{:.2f}"),
]
# (key, title, True if higher is better)
RATIOS = [
    ("deliveries_per_s", "deliveries/s", True),
    ("p99_ms", "p99 latency", False),
    ("p50_ms", "p50 latency", False),
    ("connect_s", "connect time", False),
    ("kb_per_client", "RSS/client", False),
]


def phase_of(key: str) -> str | None:
    """The generator phase a cell's figure was measured in (None: not one phase's figure)."""
    if key == "deliveries_per_s" or key.startswith("fanout_"):
        return "fanout"
    if key in ("p50_ms", "p99_ms", "max_ms") or key.startswith("latency_"):
        return "latency"
    if key == "connect_s" or key.startswith("connect_"):
        return "connect"
    return None


def quiet_runs(cells: list[dict], phase: str | None) -> list[dict]:
    """The runs whose ``phase`` had the machine to itself, or all runs if none did.

    Other work on the machine only ever lowers a server's figure (it takes CPU the server
    and the generator needed), so the runs that did not share the machine are the ones
    that say what the server can do; the tables say how many runs that was.
    """
    if phase is None:
        return cells
    quiet = [cell for cell in cells if (cell.get(f"{phase}_other_cores") or 0.0) < SHARED]
    return quiet or cells


def had_quiet_run(cells: list[dict], phase: str) -> bool:
    """Whether any of these runs did ``phase`` without other work on the machine."""
    return any((cell.get(f"{phase}_other_cores") if cell.get(f"{phase}_other_cores") is not None
                else SHARED) < SHARED for cell in cells)


def median(cells: list[dict], key: str) -> float | None:
    """Median of ``key`` over the runs whose phase did not share the machine (all, if none)."""
    values = [cell[key] for cell in quiet_runs(cells, phase_of(key)) if cell.get(key) is not None]
    return statistics.median(values) if values else None


def group(cells: list[dict]) -> dict[tuple[str, int], list[dict]]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["server"], cell["n"]), []).append(cell)
    return groups


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def medians_table(cells: list[dict], columns=COLUMNS) -> str:
    rows = []
    for (server, n), group_cells in sorted(group(cells).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        quiet = sum(1 for cell in group_cells
                    if cell.get("fanout_other_cores") is not None and cell["fanout_other_cores"] < SHARED)
        row = [f"{n:,}", server, f"{len(group_cells)} ({quiet} quiet)"]
        for key, _, pattern in columns:
            text = fmt(median(group_cells, key), pattern)
            used = [cell[key] for cell in quiet_runs(group_cells, phase_of(key)) if cell.get(key) is not None]
            if key in SPREAD and len(used) > 1:
                text += f" ({pattern.format(min(used))}-{pattern.format(max(used))})"
            if key in MARKS and used:
                text += mark(used, *MARKS[key])
            row.append(text)
        rows.append(row)
    return table(rows, ["N", "server", "runs (fan-out not shared)"] + [title for _, title, _ in columns])


def mark(values: list[float], threshold: float, word: str) -> str:
    """`` word`` if the median reaches the threshold, `` word in k of n runs`` if some runs do."""
    over = sum(1 for value in values if value >= threshold)
    if statistics.median(values) >= threshold:
        return f" **{word}**"
    return f" ({word} in {over} of {len(values)} runs)" if over else ""


def ceiling_rows(cells: list[dict]) -> list[dict]:
    """Per N: the relay's deliveries/s and each server's share of it (medians)."""
    groups = group(cells)
    rows = []
    for n in sorted({n for _, n in groups}):
        if (CEILING, n) not in groups:
            continue
        ceiling = median(groups[(CEILING, n)], "deliveries_per_s")
        relay_cells = groups[(CEILING, n)]
        machine = [c["fanout_server_cores"] + c["fanout_gen_cores"] for c in quiet_runs(relay_cells, "fanout")
                   if c.get("fanout_server_cores") is not None and c.get("fanout_gen_cores") is not None]
        row = {"n": n, "ceiling": ceiling, "busiest": median(relay_cells, "fanout_gen_busiest"),
               "machine": statistics.median(machine) if machine else None,
               "other": median(relay_cells, "fanout_other_cores"), "shares": {}}
        for (server, size), group_cells in sorted(groups.items()):
            rate = median(group_cells, "deliveries_per_s")
            if size == n and server != CEILING and rate is not None and ceiling:
                row["shares"][server] = rate / ceiling
        rows.append(row)
    return rows


def ceiling_table(cells: list[dict]) -> str:
    rows = ceiling_rows(cells)
    servers = sorted({server for row in rows for server in row["shares"]})
    body = [
        [f"{row['n']:,}", fmt(row["ceiling"], "{:,.0f}"), fmt(row["busiest"], "{:.2f}"),
         fmt(row["machine"], "{:.2f}"), fmt(row["other"], "{:.2f}")]
        + [fmt(row["shares"].get(server), "{:.2f}x") for server in servers]
        for row in rows
    ]
    header = ["N", "relay deliveries/s (the generator's ceiling)", "busiest generator process (cores)",
              "relay + generator (cores of 2)", "other work (cores)"]
    return table(body, header + [f"{server} / relay" for server in servers])


def ratio_rows(cells: list[dict], base: str = "ngircd", ours: str = "ours") -> list[dict]:
    groups = group(cells)
    rows = []
    for n in sorted({n for _, n in groups}):
        if (ours, n) not in groups or (base, n) not in groups:
            continue
        row = {"n": n, "shared": set()}
        for key, _, _ in RATIOS:
            a, b = median(groups[(ours, n)], key), median(groups[(base, n)], key)
            row[key] = a / b if a is not None and b else None
            phase = phase_of(key)
            if phase and not (had_quiet_run(groups[(ours, n)], phase)
                              and had_quiet_run(groups[(base, n)], phase)):
                row["shared"].add(key)  # one side has only runs that shared the machine
        rows.append(row)
    return rows


def ratios_table(cells: list[dict], base: str = "ngircd", ours: str = "ours") -> str:
    rows = [
        [f"{row['n']:,}"] + [fmt(row[key], "{:.2f}x") + (" (shared)" if key in row["shared"] else "")
                             for key, _, _ in RATIOS]
        for row in ratio_rows(cells, base, ours)
    ]
    header = ["N"] + [f"{title} ({'higher' if up else 'lower'} is better)" for _, title, up in RATIOS]
    return table(rows, header)


def history_section(cells: list[dict]) -> list[str]:
    """History on against history off, when the run had both (``--servers ...,ours+history``)."""
    if not ratio_rows(cells, "ours", "ours+history"):
        return []
    return [
        "## History on / off: ours+history / ours (medians of the same run)",
        "",
        "`ours+history` stores every room line in a fresh SQLite file (WAL, group commit) before",
        "any member gets it; `ours` runs with `--no-history`.",
        "",
        ratios_table(cells, "ours", "ours+history"),
        "",
    ]


def correctness_table(cells: list[dict]) -> str:
    rows = []
    for (server, n), group_cells in sorted(group(cells).items(), key=lambda kv: (kv[0][1], kv[0][0])):
        total = lambda key: sum(cell.get(key) or 0 for cell in group_cells)  # noqa: E731
        rows.append([
            f"{n:,}", server, f"{total('fanout_received'):,}", f"{total('latency_received'):,}",
            f"{total('checked'):,}", str(total("lost")), str(total("miscounted")),
            str(total("reordered")), str(total("disconnected")),
            str(sum(1 for cell in group_cells if cell.get("timed_out"))),
        ])
    header = ["N", "server", "fan-out deliveries counted", "latency deliveries counted",
              "of these, sequence numbers checked", "lost", "receivers miscounted", "reordered",
              "disconnected", "phases timed out"]
    return table(rows, header)


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group(cells)
    servers = sorted({server for server, _ in groups})
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in servers:
        sizes = sorted(n for s, n in groups if s == server)
        rates = [median(groups[(server, n)], "deliveries_per_s") for n in sizes]
        p99 = [median(groups[(server, n)], "p99_ms") for n in sizes]
        if server == CEILING:  # a throughput calibration; its latency is no floor for anyone
            left.plot(sizes, rates, marker="o", linestyle="--", color="grey",
                      label=f"{server} (generator's ceiling)")
            continue
        left.plot(sizes, rates, marker="o", label=server)
        right.plot(sizes, p99, marker="o", label=server)
    left.set(xscale="log", yscale="log", xlabel="members in the room (N)",
             ylabel="deliveries per second (median)", title="Fan-out throughput")
    right.set(xscale="log", yscale="log", xlabel="members in the room (N)",
              ylabel="p99 latency, ms (median)", title="Latency at 200 messages/s offered")
    for axes in (left, right):
        axes.grid(True, which="both", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_markdown(path: Path, *, cells: list[dict], big_cells: list[dict], machine: dict,
                   commands: list[str], params: dict, plot_name: str | None,
                   ngircd_conf: str, notes: list[str]) -> None:
    parts = [
        "# Benchmarks: our server side by side with ngircd",
        "",
        "Written by `bench/run.py` from the numbers it measured in one run; do not edit by hand.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
        "## How to reproduce",
        "",
        "```sh",
        *commands,
        "```",
        "",
        "## What was measured",
        "",
        *[f"- {line}" for line in params["description"]],
        "",
        "## Medians per cell",
        "",
        "Each figure is the median over the runs whose phase did not share the machine (other work",
        f"< {SHARED} cores; other work only lowers a figure), or over all runs if none was quiet.",
        "Fan-out deliveries/s and p99 also show (min-max) over the runs used. A cell is marked",
        f"**generator-bound** when its busiest generator process used >= {GENERATOR_BOUND} of a core",
        "(its figure is then the generator's, not the server's), and **shared** when other work on",
        f"the machine used >= {SHARED} cores during the fan-out phase of every run (its figure is then low).",
        "",
        medians_table(cells),
        "",
        "## The generator's ceiling: the relay",
        "",
        f"`{CEILING}` is `bench/relay.c`, a relay that does the least possible work per delivery; what",
        "the generator measures against it is the most it can measure. A server's figure is its own",
        "only while it stays well below this ceiling. The relay calibrates throughput only: it",
        "writes to every member once per loop pass, so its latency (in the table above) is no",
        "floor for the servers and is left out of the plot's latency panel.",
        "",
        ceiling_table(cells),
        "",
        "## Ratios, ours / ngircd (medians of the same run)",
        "",
        "(shared): one of the two servers had no run of that phase without other work on the",
        "machine, so the ratio mixes a quiet figure with a depressed one.",
        "",
        ratios_table(cells),
        "",
        *history_section(cells),
        "## CPU per phase, in cores (CPU seconds / wall seconds; median)",
        "",
        "The generator's own CPU is shown next to the server's: on 2 cores, a phase where",
        "server + generator is near 2.0 is limited by the machine, not by the server alone.",
        "",
        medians_table(cells, CPU_COLUMNS),
        "",
    ]
    if big_cells:
        parts += [
            f"## Capacity: {big_cells[0]['n']:,} clients (connect + idle RSS only)",
            "",
            medians_table(big_cells, COLUMNS[:3] + CPU_COLUMNS[:2]),
            "",
        ]
    parts += [
        "## Correctness (summed over all runs)",
        "",
        "Every delivery was counted, and each receiver's count had to end exactly at what it was",
        "sent (a lost or duplicated line shows as lost or miscounted). On a sample of receivers",
        "(the last ids in fan-out, the latency probes) every sequence number was also checked: per",
        "sender, the numbers must continue exactly where the previous chunk stopped.",
        "",
        correctness_table(cells + big_cells),
        "",
    ]
    if plot_name:
        parts += [f"![deliveries/s and p99 latency against N]({plot_name})", ""]
    if notes:
        parts += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    parts += [
        "## Cluster mode",
        "",
        "Several nodes sharing one Redis, against one process, behind the same generator: measured",
        "by `python bench/cluster.py`, written to [cluster-benchmarks.md](cluster-benchmarks.md),",
        "with what a third node would add on a bigger machine and where the limit is.",
        "",
        "## ngircd's configuration (written to a temporary directory per run)",
        "",
        "```ini",
        ngircd_conf.strip(),
        "```",
        "",
    ]
    path.write_text("\n".join(parts))
