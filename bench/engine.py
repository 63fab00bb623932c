"""Reserve orders/s through the engine with group commit, against the seed's design.

10 hot SKUs, 2 items per order, 64 concurrent callers, the same PostgreSQL, the same run.
The baseline is the seed's design driven by pgbench on the same SKUs (``bench/baseline.py``,
best of 8 and 64 clients). Prints one JSON line:
{"bench": "engine", "orders_per_s", "seed_design_tps", "ratio", "sweep", ...}.
Target (issue 19): ratio >= 3. Also measured in the same run:

- ``sweep``: orders/s and latency percentiles at 8, 16, 32 and 64 callers, each point
  alternating with the seed design at as many pgbench clients (the plots of docs/bench.md);
- the same engine with one command per transaction (``unbatched_orders_per_s``), which
  isolates what group commit itself buys;
- the same storm with a stock policy on every hot SKU against the storm without,
  alternating (``policies_over_plain``, target >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import (
    SWEEP_CLIENTS,
    SeedRun,
    baseline_keys,
    percentile,
    run_seed_design,
    seed_hot_stock,
)
from bench.stack import bench_stack
from service.bootstrap import Container, build
from service.config import Settings
from service.devtools.stack import EmbeddedStack
from service.domain import validation as v
from service.domain.commands import SetStockPolicy
from service.domain.values import Sku, StockPolicy
from service.event_loop import run as run_on_loop
from service.lifecycle import settle_heap

SKUS = [f"hot-{i}" for i in range(10)]


async def stock_up(container: Container, skus: list[str]) -> None:
    """Set each SKU's default-warehouse row to more units than any bench takes."""
    for sku in skus:
        await container.engine.update_stock(
            v.update_stock(
                product_id=sku,
                variant_id=None,
                warehouse_id=None,
                operation="SET",
                quantity=10**12,
                reason="bench",
                limits=container.limits,
                default_warehouse_id="default",
            )
        )


async def reserve_storm(
    settings: Settings, seconds: float, callers: int, run: str = "a", policies: bool = False
) -> dict[str, float]:
    async with build(settings) as container:
        await stock_up(container, SKUS)
        # the heap as `inventory serve` leaves it once started: without this, full collections
        # of the bench's start-up heap (75-100 ms each, two or three in 10 s) stalled every caller
        settle_heap()
        for sku in SKUS:
            policy = StockPolicy(safety_stock=1_000, reorder_point=10_000, backorder_limit=500)
            await container.engine.set_policy(
                SetStockPolicy(Sku(sku), "default", policy if policies else StockPolicy())
            )
        done = 0
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def caller(index: int) -> None:
            nonlocal done
            rng = random.Random(index)
            n = 0
            while time.perf_counter() < deadline:
                a, b = rng.sample(SKUS, 2)
                command = v.reserve(
                    f"bench-{run}-{index}-{n}",
                    [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}],
                    None,
                    container.limits,
                )
                started = time.perf_counter()
                await container.engine.reserve(command)
                latencies.append(time.perf_counter() - started)
                done += 1
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "orders_per_s": round(done / elapsed, 1),
        "orders": done,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def storm(
    settings: Settings, seconds: float, callers: int, run: str = "a", policies: bool = False
) -> dict[str, float]:
    """``reserve_storm`` on the event loop ``inventory serve`` runs on (INVENTORY_EVENT_LOOP)."""
    return run_on_loop(
        reserve_storm(settings, seconds, callers, run=run, policies=policies), settings.event_loop
    )


def sweep(
    stack: EmbeddedStack, settings: Settings, seconds: float, clients: list[int]
) -> tuple[list[dict[str, float]], list[SeedRun]]:
    """At each concurrency the seed design, then the engine: alternating, to share the noise."""
    points, seeds = [], []
    for n in clients:
        seed = run_seed_design(stack, n, seconds)
        engine = storm(settings, seconds, n, run=f"s{n}")
        seeds.append(seed)
        points.append(
            {
                "clients": n,
                "orders_per_s": engine["orders_per_s"],
                "p50_ms": engine["p50_ms"],
                "p95_ms": engine["p95_ms"],
                "p99_ms": engine["p99_ms"],
                "seed_design_tps": seed.tps,
                "seed_p50_ms": seed.p50_ms,
                "seed_p95_ms": seed.p95_ms,
                "seed_p99_ms": seed.p99_ms,
            }
        )
    return points, seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--sweep-seconds", type=float, default=4, help="per point and side")
    parser.add_argument("--sweep", default=",".join(map(str, SWEEP_CLIENTS)), help="callers")
    args = parser.parse_args()
    clients = sorted({int(c) for c in args.sweep.split(",")} | {8, 64})
    with bench_stack() as (stack, settings):
        asyncio.run(seed_hot_stock(settings, SKUS))
        points, seeds = sweep(stack, settings, args.sweep_seconds, clients)
        baseline = baseline_keys(seeds)
        figures = storm(settings, args.seconds, args.callers)
        # the same storm with a policy on every hot SKU, alternating to share the noise
        half = args.seconds / 2
        plain, with_policies = 0.0, 0.0
        for turn in range(2):
            plain += storm(settings, half, args.callers, run=f"p{turn}")["orders_per_s"]
            with_policies += storm(settings, half, args.callers, run=f"q{turn}", policies=True)[
                "orders_per_s"
            ]
        unbatched = settings.model_copy(update={"batch_max_size": 1, "batch_window_ms": 0})
        single = storm(unbatched, args.seconds, args.callers, run="b")
    print(
        json.dumps(
            {
                "bench": "engine",
                **figures,
                "callers": args.callers,
                **baseline,
                "ratio": round(figures["orders_per_s"] / baseline["seed_design_tps"], 2),
                "unbatched_orders_per_s": single["orders_per_s"],
                "group_commit_gain": round(figures["orders_per_s"] / single["orders_per_s"], 2),
                "policies_orders_per_s": round(with_policies / 2, 1),
                "policies_over_plain": round(with_policies / plain, 3),
                "sweep": points,
                "targets": {"ratio": 3, "policies_over_plain": 0.9},
            }
        )
    )


if __name__ == "__main__":
    main()
