"""``docs/bench.md`` from the JSON lines of ``bench/collect.py``: targets, figures, plots, profiles.

The issue's targets checked against the figures of the same run, the machine and the date,
every bench's scalar figures, PNG plots under ``docs/bench/`` (orders/s against concurrency
for the engine, the pipeline and the seed's design; latency percentiles), and "Where the time
goes" from ``bench/profiling.py``'s tables.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
Results = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Target:
    bench: str
    figure: str
    today: str  # when issue 19 was written
    target: str
    keys: tuple[str, ...]
    met: Callable[..., bool]


TARGETS = (
    Target(
        "engine", "engine orders/s ÷ seed design tps", "1.8", "≥ 3", ("ratio",), lambda r: r >= 3
    ),
    Target(
        "pipeline",
        "end-to-end orders/s (one worker); ÷ seed design tps",
        "4,100",
        "≥ 5,500, and ≥ 3.5x",
        ("orders_per_s", "ratio"),
        lambda n, r: n >= 5500 and r >= 3.5,
    ),
    Target(
        "grpc_api",
        "ReserveStock orders/s ÷ seed design tps; p99 ms",
        "0.9",
        "≥ 1.5, p99 < 50 ms",
        ("ratio", "reserve_p99_ms"),
        lambda r, p99: r >= 1.5 and p99 < 50,
    ),
    Target(
        "grpc_api",
        "ReserveStock ÷ empty-RPC ceiling (same run)",
        "0.37",
        "≥ 0.5",
        ("reserve_over_empty_rpc",),
        lambda r: r >= 0.5,
    ),
    Target(
        "cache",
        "cached GetStock ÷ empty RPC; p99 ms",
        "0.75, 7 ms",
        "≥ 0.7, < 10 ms",
        ("ratio", "cached_getstock_p99_ms"),
        lambda r, p99: r >= 0.7 and p99 < 10,
    ),
    Target(
        "pipeline",
        "worker peak RSS (MB)",
        "147 MB",
        "< 300 MB",
        ("worker_peak_rss_mb",),
        lambda mb: mb < 300,
    ),
)


def load(path: Path) -> Results:
    results: Results = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            results[record["bench"]] = record
    return results


def number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def target_rows(results: Results) -> list[str]:
    rows = [
        "| bench | figure | issue 19 (before) | target | this run | met |",
        "|---|---|---|---|---|---|",
    ]
    for t in TARGETS:
        record = results.get(t.bench, {})
        values = [record.get(k) for k in t.keys]
        if any(v is None for v in values):
            measured, met = record.get("error", "not measured"), "n/a"
        else:
            measured = ", ".join(number(v) for v in values)
            met = "yes" if t.met(*values) else "**no**"
        rows.append(
            f"| `bench/{t.bench}.py` | {t.figure} | {t.today} | {t.target} | {measured} | {met} |"
        )
    return rows


def sustained_lines(pipeline: dict[str, Any]) -> list[str]:
    """The pipeline's second round, right behind the measured one (``bench/pipeline.py``)."""
    rate, ratio = pipeline.get("sustained_orders_per_s"), pipeline.get("sustained_ratio")
    if rate is None or ratio is None:
        return []
    cpu = number(pipeline.get("sustained_worker_cpu_us_per_order"))
    first_cpu = number(pipeline.get("worker_cpu_us_per_order"))
    return [
        f"The pipeline's sustained round, right behind the measured one: {number(rate)} orders/s,",
        f"{number(ratio)} times the seed design, {cpu} µs of worker CPU per order against",
        f"{first_cpu} in the measured round: it also does what the measured round's expiry agent",
        'left behind (docs/architecture.md, "A burst defers the expiry agent\'s work"). Issue',
        "19's target is the measured round's.",
        "",
    ]


def figure_rows(record: dict[str, Any]) -> list[str]:
    scalars = {k: v for k, v in record.items() if k != "bench" and not isinstance(v, dict | list)}
    return [f"| {k} | {number(v)} |" for k, v in scalars.items()]


def plot_throughput(results: Results, path: Path) -> bool:
    sweep = results.get("engine", {}).get("sweep")
    if not sweep:
        return False
    clients = [p["clients"] for p in sweep]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(clients, [p["orders_per_s"] for p in sweep], "o-", label="engine (in process)")
    ax.plot(clients, [p["seed_design_tps"] for p in sweep], "s--", label="seed design (pgbench)")
    pipeline = results.get("pipeline", {}).get("orders_per_s")
    if pipeline:
        ax.axhline(
            pipeline, color="tab:green", linestyle=":", label="pipeline, one worker (default)"
        )
    grpc = results.get("grpc_api", {})
    if grpc.get("reserve_orders_per_s"):
        ax.plot(
            [grpc.get("callers", 64)],
            [grpc["reserve_orders_per_s"]],
            "D",
            color="tab:red",
            label="gRPC ReserveStock (Python client)",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_xlabel("concurrent callers / pgbench clients")
    ax.set_ylabel("orders/s (2 items, 10 hot SKUs)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_latency(results: Results, path: Path) -> bool:
    sweep = results.get("engine", {}).get("sweep")
    if not sweep:
        return False
    clients = [p["clients"] for p in sweep]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, style in (("p50", "o"), ("p95", "^"), ("p99", "v")):
        ax.plot(clients, [p[f"{key}_ms"] for p in sweep], f"{style}-", label=f"engine {key}")
        ax.plot(
            clients, [p[f"seed_{key}_ms"] for p in sweep], f"{style}--", label=f"seed design {key}"
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(clients, [str(c) for c in clients])
    ax.set_xlabel("concurrent callers / pgbench clients")
    ax.set_ylabel("latency per order (ms, log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def sweep_rows(results: Results) -> list[str]:
    sweep = results.get("engine", {}).get("sweep", [])
    rows = [
        "| callers | engine orders/s | p50 / p95 / p99 ms | seed design tps | p50 / p95 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    for p in sweep:
        rows.append(
            f"| {p['clients']} | {number(p['orders_per_s'])} | {p['p50_ms']} / {p['p95_ms']} / "
            f"{p['p99_ms']} | {number(p['seed_design_tps'])} | {p['seed_p50_ms']} / "
            f"{p['seed_p95_ms']} / {p['seed_p99_ms']} |"
        )
    return rows if sweep else []


def profile_section(name: str, profile: dict[str, Any]) -> list[str]:
    threads = ", ".join(f"{t} {pct} %" for t, pct in profile.get("threads_pct", {}).items())
    lines = [
        f"### {name}",
        "",
        f"{number(profile['samples'])} busy samples of the main thread, "
        f"{number(profile['orders_per_s_under_py_spy'])} orders/s under py-spy; the main "
        f"thread waited in epoll {profile.get('idle_pct_of_main_thread', '?')} % of its samples"
        + (f"; samples by thread: {threads}." if threads else "."),
        "",
        "| function (file) | own % | cumulative % |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{r['function']}` | {r['own_pct']} | {r['cum_pct']} |" for r in profile["top_own"]
    ]
    lines += ["", "| own time by package | % |", "|---|---|"]
    lines += [
        f"| {r['package']} | {r['own_pct']} |" for r in profile["packages_own"] if r["own_pct"]
    ]
    lines += ["", "| the service's pieces (on the stack) | cumulative % |", "|---|---|"]
    lines += [f"| {r['piece']} | {r['cum_pct']} |" for r in profile["pieces_cum"]]
    return [*lines, ""]


# the costs issue 19 named, as shares of the worker's main thread, and the rows that measure them
KNOWN_COSTS = (
    ("Faust's per-message path", "≈ 30 %", "faust / mode / aiokafka, none of our code below"),
    ("the planner", "≈ 10 %", "planner (service/domain/planner.py"),
    ("the outbox relay", "≈ 6 %", "outbox relay (streams/outbox.py)"),
)


def known_cost_rows(worker: dict[str, Any]) -> list[str]:
    pieces = {row["piece"]: row["cum_pct"] for row in worker.get("pieces_cum", [])}
    rows = ["| cost | issue 19 | this run (worker, cumulative %) |", "|---|---|---|"]
    for name, issue, prefix in KNOWN_COSTS:
        found = [pct for piece, pct in pieces.items() if piece.startswith(prefix)]
        rows.append(f"| {name} | {issue} | {found[0] if found else 'n/a'} |")
    return [*rows, ""]


def render(results: Results, plots: dict[str, bool]) -> str:
    m = results.get("machine", {})
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/collect.py` runs every bench and collects its JSON line",
        "into `bench/results/latest.jsonl`; `bench/report.py` writes this page). The baseline of",
        "every reservation bench is the seed's design (`bench/seed_design.sql`: one transaction",
        "per 2-item order, `SELECT … FOR UPDATE` per item, UPDATE, INSERT reservation, INSERT",
        "movement) driven by pgbench on the same database and the same 10 hot SKUs, best of 8",
        "and 64 clients, measured in the same run as the figure it divides (`bench/baseline.py`).",
        "The machine is shared and noisy: compare ratios from one run, not absolute figures",
        "across runs.",
        "",
        f"- date: {m.get('date', '?')}, commit {m.get('commit', '?')}",
        f"- machine: {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), "
        f"{m.get('memory_gb', '?')} GB memory, "
        f"load average {m.get('load_average_1m', '?')} at the start",
        f"- {m.get('postgres', 'PostgreSQL ?')} (embedded wheel), Python {m.get('python', '?')}",
        "",
        "## Targets (issue 19)",
        "",
        *target_rows(results),
        "",
        *sustained_lines(results.get("pipeline", {})),
        "## Orders/s against concurrency",
        "",
    ]
    if plots.get("throughput"):
        out += ["![orders/s against concurrency](bench/throughput.png)", ""]
    if plots.get("latency"):
        out += ["![latency percentiles against concurrency](bench/latency.png)", ""]
    out += [
        "Each point of the engine alternates with the seed design at as many pgbench clients",
        "(`bench/engine.py`'s `sweep`). The pipeline has no concurrency knob of its own (one",
        "worker, its partitions): one figure, at the defaults. Its load is published and its",
        "results read with librdkafka (`bench/rdkafka_load.py`, C threads), as pgbench drives",
        "the seed design in C: the bench shares the two cores with the service.",
        "",
        *sweep_rows(results),
        "",
        "## Where the time goes",
        "",
        "py-spy (`bench/profiling.py`, sampled at 200 Hz, collapsed stacks under",
        "`bench/results/`): own % is the time in the function itself, cumulative % the time",
        "with the function anywhere on the stack, both over the main thread's busy samples.",
        "Compiled code has no frame of its own: gRPC's Cython callbacks and the C JSON encoder",
        "show as the Python frame that called them (`Handle._run`, `JSONEncoder.iterencode`),",
        "and a socket write's system call as `_SelectorSocketTransport.write`.",
        "",
    ]
    profile = results.get("profiling", {})
    if "engine" in profile:
        out += profile_section("The engine bench (64 callers, in process)", profile["engine"])
    if "worker" in profile:
        out += ["The costs the issue named, in the worker:", ""]
        out += known_cost_rows(profile["worker"])
        out += profile_section("The pipeline's worker", profile["worker"])
    if "api" in profile:
        out += profile_section("The API server under ReserveStock (64 callers)", profile["api"])
    if "engine" not in profile:
        out += [f"Not measured in this run ({profile.get('error', 'no profile line')}).", ""]
    out += ["## Every figure", ""]
    for name, record in results.items():
        if name in ("machine", "profiling"):
            continue
        out += [f"### `bench/{name}.py`", "", "| figure | value |", "|---|---|"]
        out += [*figure_rows(record), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "results", type=Path, nargs="?", default=ROOT / "bench" / "results" / "latest.jsonl"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench.md")
    args = parser.parse_args()
    results = load(args.results)
    images = args.out.parent / "bench"
    images.mkdir(parents=True, exist_ok=True)
    plots = {
        "throughput": plot_throughput(results, images / "throughput.png"),
        "latency": plot_latency(results, images / "latency.png"),
    }
    args.out.write_text(render(results, plots))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
