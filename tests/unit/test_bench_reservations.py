"""The reservation benches run in a tiny configuration and print the keys the targets of
docs/bench.md are read from (``bench/report.py``): the seed design's baseline from the same
run and the ratio to it. A smoke run on an embedded stack of their own; no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE_KEYS = {"seed_design_tps", "seed_design_tps_8", "seed_design_tps_64", "ratio"}


def bench(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return line


@pytest.mark.stack
def test_the_seed_design_baseline_reports_each_client_count_with_percentiles() -> None:
    line = bench("bench/baseline.py", "--seconds", "1", "--clients", "8,64")
    assert line["bench"] == "baseline"
    assert [run["clients"] for run in line["sweep"]] == [8, 64]
    assert line["seed_design_tps"] == max(line["seed_design_tps_8"], line["seed_design_tps_64"])
    for run in line["sweep"]:
        assert run["tps"] > 0
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
        assert run["failed"] == 0


@pytest.mark.stack
def test_the_engine_bench_sweeps_concurrency_against_the_seed_design() -> None:
    line = bench("bench/engine.py", "--seconds", "1", "--sweep-seconds", "1", "--sweep", "8,16")
    assert line["bench"] == "engine"
    assert set(line) >= BASELINE_KEYS
    assert "pgbench_hot_tps" not in line
    assert [p["clients"] for p in line["sweep"]] == [8, 16, 64]
    assert set(line["sweep"][0]) >= {
        "orders_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "seed_design_tps",
        "seed_p50_ms",
        "seed_p95_ms",
        "seed_p99_ms",
    }


@pytest.mark.stack
def test_the_pipeline_bench_reports_the_baseline_the_sustained_round_and_the_worker() -> None:
    line = bench(
        "bench/pipeline.py", "--orders", "200", "--warmup", "50", "--baseline-seconds", "1"
    )
    assert line["bench"] == "pipeline"
    assert BASELINE_KEYS | {
        "orders_per_s",
        "worker_peak_rss_mb",
        "sustained_orders_per_s",
        "sustained_ratio",
    } <= set(line)
    assert line["reserved"] == 200
    assert line["sustained_orders_per_s"] > 0
    assert line["worker_cpu_us_per_order"] > 0
    assert line["sustained_worker_cpu_us_per_order"] > 0


@pytest.mark.stack
def test_the_grpc_bench_reports_the_baseline_and_the_empty_rpc_ratio() -> None:
    line = bench("bench/grpc_api.py", "--seconds", "1", "--baseline-seconds", "1")
    assert line["bench"] == "grpc_api"
    assert BASELINE_KEYS | {
        "reserve_orders_per_s",
        "reserve_p99_ms",
        "empty_rpc_rps",
        "reserve_over_empty_rpc",
    } <= set(line)
