"""GetStock ``as_of`` at random instants on a SKU with 1,000,000 movements, against a plain
uncached GetStock (the baseline), in the same run, on the same PostgreSQL.

Setup: one stock row, its 1,000,000 movements inserted by one ``generate_series`` statement
(ADD 1 each, 10 ms apart, the newest a second ago), ANALYZE. The query needs the index
``ix_stock_movements_stock_id_created_at`` (revision 0004): if the migrations did not create
it, the setup does (``CREATE INDEX IF NOT EXISTS``) and the line says so (``"index"``).

Both reads are ``StockQueries`` without the cache, one caller, alternating so that they share
the noise; each as_of answer is checked against the count of movements up to its instant.
Then a few as_of reads without the index, to show what it buys.

Prints one JSON line: {"bench": "as_of", "movements", "p50_ms", "p99_ms", "baseline_p50_ms",
"baseline_p99_ms", "p50_over_baseline", "index", "index_used", "no_index_p50_ms", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import bench_stack
from db.session import create_engine
from db.stock_history import LEVELS_AT
from service.config import Settings
from service.domain.values import Sku
from service.queries import AS_OF_CLOCK_SKEW, StockQueries

SKU = Sku("as-of-bench")
INDEX = "ix_stock_movements_stock_id_created_at"
STEP = timedelta(milliseconds=10)  # between two movements
NO_TIMEOUT = "SET LOCAL statement_timeout = 0"  # the setup's statements run for seconds

CREATE_ROW = text(
    "INSERT INTO stocks (id, product_id, warehouse_id, available, reserved, total, version) "
    "VALUES (gen_random_uuid(), :product, 'default', :n, 0, :n, :n) RETURNING id"
)
# the row's whole history, oldest first: the g-th movement leaves g units
INSERT_MOVEMENTS = text(
    "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, quantity, "
    "available_after, reserved_after, total_after, reason, actor, created_at) "
    "SELECT :stock_id, :product, 'default', 'ADD', 1, g, 0, g, 'bench', 'bench', "
    "CAST(:start AS timestamptz) + g * interval '10 milliseconds' "
    "FROM generate_series(1, :n) AS g"
)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 3)


async def has_index(db: AsyncEngine) -> bool:
    async with db.connect() as conn:
        found = await conn.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = :i"), {"i": INDEX}
        )
        return found.first() is not None


async def setup(db: AsyncEngine, movements: int) -> tuple[datetime, str]:
    """The SKU and its history; returns the instant before the first movement and where the
    index came from."""
    async with db.begin() as conn:
        await conn.execute(text(NO_TIMEOUT))
        start: datetime = (
            await conn.execute(
                text("SELECT now() - CAST(:span AS interval)"),
                {"span": STEP * movements + timedelta(seconds=1)},
            )
        ).scalar_one()
        stock_id = (
            await conn.execute(CREATE_ROW, {"product": SKU.product_id, "n": movements})
        ).scalar_one()
        await conn.execute(
            INSERT_MOVEMENTS,
            {"stock_id": stock_id, "product": SKU.product_id, "start": start, "n": movements},
        )
    index = "revision 0004"
    if not await has_index(db):
        index = "created by the bench: CREATE INDEX IF NOT EXISTS (revision 0004 not there)"
        async with db.begin() as conn:
            await conn.execute(text(NO_TIMEOUT))
            await conn.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS {INDEX} "
                    "ON stock_movements (stock_id, created_at, id)"
                )
            )
    async with db.begin() as conn:
        await conn.execute(text(NO_TIMEOUT))
        await conn.execute(text("ANALYZE stock_movements"))
    return start, index


async def plan_uses_index(db: AsyncEngine, at: datetime) -> bool:
    params = {
        "at": at,
        "skew": AS_OF_CLOCK_SKEW.total_seconds(),
        "product": SKU.product_id,
        "variant": "",
        "warehouse": None,
    }
    async with db.connect() as conn:
        plan = await conn.execute(text(f"EXPLAIN {LEVELS_AT.text}"), params)
        return any(INDEX in line for (line,) in plan)


async def run(settings: Settings, movements: int, samples: int, no_index_samples: int) -> dict:
    db = create_engine(settings.database())
    try:
        started = time.perf_counter()
        start, index = await setup(db, movements)
        setup_s = time.perf_counter() - started
        span_s = (STEP * movements).total_seconds()
        reads = StockQueries(db)
        rng = random.Random(1)

        def instant() -> tuple[datetime, int]:
            """A random instant within the history and the units it must answer."""
            offset = rng.uniform(0, span_s + 0.5)
            at = start + timedelta(seconds=offset)
            return at, min(movements, int(offset / STEP.total_seconds()))

        async def as_of_once() -> float:
            at, expected = instant()
            began = time.perf_counter()
            view = await reads.get_stock_as_of(SKU, None, at)
            took = time.perf_counter() - began
            # the instant is rounded to microseconds: a movement on it may fall either side
            assert abs(view.available - expected) <= 1, (at, view.available, expected)
            return took

        async def baseline_once() -> float:
            began = time.perf_counter()
            view = await reads.get_stock(SKU, None)
            took = time.perf_counter() - began
            assert view.available == movements
            return took

        for _ in range(min(200, samples)):  # warm the pool, the caches and the plans
            await as_of_once()
            await baseline_once()
        as_of: list[float] = []
        baseline: list[float] = []
        for _ in range(samples):
            as_of.append(await as_of_once())
            baseline.append(await baseline_once())
        index_used = await plan_uses_index(db, instant()[0])

        async with db.begin() as conn:
            await conn.execute(text(f"DROP INDEX {INDEX}"))
        without = [await as_of_once() for _ in range(no_index_samples)]
    finally:
        await db.dispose()
    p50, base_p50 = percentile(as_of, 0.5), percentile(baseline, 0.5)
    return {
        "bench": "as_of",
        "movements": movements,
        "samples": samples,
        "p50_ms": p50,
        "p99_ms": percentile(as_of, 0.99),
        "baseline_p50_ms": base_p50,
        "baseline_p99_ms": percentile(baseline, 0.99),
        "p50_over_baseline": round(p50 / base_p50, 2),
        "index": index,
        "index_used": index_used,
        "no_index_samples": no_index_samples,
        "no_index_p50_ms": percentile(without, 0.5) if without else None,
        "setup_s": round(setup_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--movements", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--no-index-samples", type=int, default=20)
    args = parser.parse_args()
    with bench_stack() as (_, settings):
        figures = asyncio.run(run(settings, args.movements, args.samples, args.no_index_samples))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
