"""``bench/report.py`` turns the JSON lines of ``make bench`` into docs/bench.md and its plots,
and ``bench/profiling.py`` turns py-spy's collapsed stacks into tables: both on made-up input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.profiling import tables

ROOT = Path(__file__).resolve().parents[2]
SWEEP = [
    {
        "clients": c,
        "orders_per_s": 1000.0 * c / 8,
        "p50_ms": 5.0,
        "p95_ms": 9.0,
        "p99_ms": 12.0,
        "seed_design_tps": 1500.0,
        "seed_p50_ms": 4.0,
        "seed_p95_ms": 40.0,
        "seed_p99_ms": 90.0,
    }
    for c in (8, 16, 32, 64)
]
PROFILE = {
    "orders_per_s_under_py_spy": 900.0,
    "samples": 10,
    "idle_pct_of_main_thread": 5.0,
    "threads_pct": {"MainThread": 100.0},
    "top_own": [{"function": "plan (service/domain/planner.py)", "own_pct": 50.0, "cum_pct": 60}],
    "packages_own": [{"package": "service/domain", "own_pct": 50.0}],
    "pieces_cum": [{"piece": "planner", "cum_pct": 60.0}],
}
LINES = [
    {"bench": "machine", "date": "2026-12-02 16:00 UTC", "nproc": 2, "cpu": "AMD EPYC"},
    {
        "bench": "engine",
        "orders_per_s": 8000.0,
        "seed_design_tps": 1600.0,
        "ratio": 5.0,
        "sweep": SWEEP,
    },
    {"bench": "pipeline", "orders_per_s": 5000.0, "ratio": 3.1, "worker_peak_rss_mb": 150.0},
    {"bench": "grpc_api", "reserve_orders_per_s": 2000.0, "ratio": 1.25, "reserve_p99_ms": 40.0},
    {"bench": "cache", "error": "exit 1; see bench/results/logs/cache.log"},
    {"bench": "profiling", "engine": PROFILE, "worker": PROFILE},
]


def test_the_report_checks_each_target_and_draws_the_plots(tmp_path: Path) -> None:
    results = tmp_path / "latest.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    out = tmp_path / "bench.md"
    done = subprocess.run(
        [sys.executable, "bench/report.py", str(results), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    rows = {line.split("|")[2].strip(): line for line in page.splitlines() if "| `bench/" in line}
    assert rows["engine orders/s ÷ seed design tps"].endswith("| 5.00 | yes |")
    assert rows["end-to-end orders/s (one worker); ÷ seed design tps"].endswith("| **no** |")
    assert "n/a" in rows["ReserveStock ÷ empty-RPC ceiling (same run)"]
    assert "exit 1" in rows["cached GetStock ÷ empty RPC; p99 ms"]
    assert "`plan (service/domain/planner.py)` | 50.0 | 60" in page
    assert (tmp_path / "bench" / "throughput.png").stat().st_size > 0
    assert (tmp_path / "bench" / "latency.png").stat().st_size > 0


def test_profile_tables_charge_own_time_to_the_leaf_and_skip_idle_and_other_threads(
    tmp_path: Path,
) -> None:
    stacks = tmp_path / "worker.stacks"
    stacks.write_text(
        "thread (1): MainThread;run (service/cli.py:1);plan (service/domain/planner.py:9) 6\n"
        "thread (1): MainThread;run (service/cli.py:1);on_message (faust/conductor.py:3) 3\n"
        "thread (1): MainThread;run (service/cli.py:1);EpollSelector.select (selectors.py:4) 1\n"
        "thread (2): Thread-1;poll (aiokafka/consumer.py:5) 10\n"
    )
    table = tables(stacks)
    assert table["samples"] == 9
    assert table["idle_pct_of_main_thread"] == 10.0
    assert table["threads_pct"] == {"MainThread": 50.0, "Thread-1": 50.0}
    assert table["top_own"][0] == {
        "function": "plan (service/domain/planner.py)",
        "own_pct": 66.7,
        "cum_pct": 66.7,
    }
    pieces = {row["piece"]: row["cum_pct"] for row in table["pieces_cum"]}
    assert pieces["planner (service/domain/planner.py, allocation.py)"] == 66.7
    assert pieces["faust / mode / aiokafka, none of our code below (the per-message path)"] == 33.3
