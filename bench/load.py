"""The hot-SKU load of issue 8, standalone: 64 gRPC clients and the order event stream.

The same run as ``tests/load/test_load.py`` (``tests/chaos/driver.py: run_hot_load``), for
``--seconds`` (default 60) on an embedded stack of its own: ``inventory serve --role api`` and
``--role worker`` as subprocesses, 10 hot SKUs kept short of stock, callers reserving,
committing, releasing, reading and restocking. After the window the books are audited (zero
oversell, invariant check clean, one outcome per order, no error but a real shortage). In the
same run, the seed's design driven by pgbench on 10 hot SKUs of its own (``hot-0..9``; the
load keeps its SKUs short of stock, the script needs ample), in a database of its own on the
same server (the load's audit would report the script's reservations, which have no order),
is the baseline, best of 8 and 64
clients (``bench/baseline.py``); ``ratio`` is RPCs/s over it. Prints one JSON line last:
{"bench": "load", "rpc_per_s", "reserve_p99_ms", ..., "seed_design_tps", "ratio", "ok"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import (
    hot_skus,
    ratio,
    seed_design_baseline,
    seed_hot_stock,
    separate_database,
)
from bench.stack import bench_stack
from db.session import create_engine
from service.config import Settings
from tests.chaos.driver import LoadRun, run_hot_load


async def measure(overrides: dict[str, object], seconds: float, clients: int) -> LoadRun:
    db = create_engine(Settings(**overrides).database())  # type: ignore[arg-type]
    log_dir = Path(tempfile.mkdtemp(prefix="inventory-bench-load-"))
    try:
        return await run_hot_load(overrides, db, log_dir, seconds=seconds, clients=clients)
    finally:
        await db.dispose()
        print(f"service logs: {log_dir}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load is held")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--baseline-seconds", type=float, default=5, help="pgbench, per side")
    args = parser.parse_args()

    with bench_stack() as (stack, settings):
        seed_url, seed_settings = separate_database(stack, settings, "seed_design")
        asyncio.run(seed_hot_stock(seed_settings, hot_skus()))
        baseline = seed_design_baseline(stack, args.baseline_seconds, libpq_url=seed_url)
        run = asyncio.run(measure(stack.overrides, args.seconds, args.clients))
    figures = run.figures()
    ok = not (run.oversold or run.audit.problems or run.rpcs.calls.unexpected)
    for line in (run.oversold + run.audit.problems + run.rpcs.calls.unexpected)[:20]:
        print(line, file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "load",
                **figures,
                **baseline,
                "ratio": ratio(figures["rpc_per_s"], baseline),
                "ok": ok,
            }
        )
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
