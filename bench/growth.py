"""Bounded growth: the engine's orders/s on an empty ledger and on a grown one, the bytes an
order leaves, and the database's size under load with every retention at one minute.

1. ``fresh``: ``--load-seconds`` of orders through the engine (each order created then paid,
   from the stream: claimed event ids, history, movements, outbox rows), empty ledger.
2. ``--past-orders`` finished orders written straight into the tables with set-based SQL
   (``generate_series``), shaped as the engine writes them (per order: 1 order, 2
   reservations, 2 processed events, 2 history steps, 4 movements), within the last 20 days;
   ``bytes_per_order`` is the database's growth over the fill divided by the orders.
3. ``grown``: the same load again, on the grown ledger (same run); ``grown_over_fresh``.
4. Steady state: the past orders removed (TRUNCATE), then ``--steady-seconds`` of load at a
   constant rate (``--steady-rate``; by default 0.7 of the slower of ``fresh`` and ``grown``:
   as fast as the callers can would make the rows kept follow the machine's noise) with
   every retention at 60 s (dedup window, orders, tombstones, movements, outbox), the pruner
   and the outbox relay running, ``pg_database_size`` sampled every ``--sample-seconds``.
   ``steady_growth_last_minute``: the growth over the last minute as a fraction of the size.

Prints the size series, then one JSON line last: {"bench": "growth", "past_orders",
"fresh_orders_per_s", "grown_orders_per_s", "grown_over_fresh", "bytes_per_order",
"steady_growth_last_minute", ...}. Targets: grown_over_fresh >= 0.9 at 10 M orders,
steady_growth_last_minute < 0.05. ``--plot docs/growth.png`` draws the series (matplotlib,
if installed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.engine import stock_up
from bench.stack import bench_stack
from db import partitions
from service.bootstrap import Container, build
from service.config import Settings
from service.domain import validation as v
from service.domain.commands import Commit, Source
from service.pruner import Pruner
from streams.app import ensure_topics
from streams.outbox import OutboxRelay

SKUS = [f"sku-{i:04d}" for i in range(1_000)]
FILL_CHUNK = 500_000
PAST_SPAN_S = 20 * 86_400  # the past orders' ages: spread over the last 20 days
MINUTE = timedelta(seconds=60)
# the steady run's constant order rate, as a share of what the engine sustained in this run:
# a steady state is one of a steady load, and the pruner and its vacuums need some headroom
STEADY_SHARE = 0.7
PRUNED_TABLES = ("orders", "reservations", "processed_events", "order_history", "stock_movements")


async def order_load(
    container: Container, seconds: float, callers: int, run: str, rate: float | None = None
) -> float:
    """Orders/s, each created then paid (two engine commands, as from the stream): as fast as
    ``callers`` can, or at most ``rate`` orders/s in all (each caller keeps its own schedule,
    so a slow moment is not made up by a burst)."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    interval = callers / rate if rate else 0.0

    async def caller(index: int) -> None:
        nonlocal done
        rng = random.Random(f"{run}-{index}")
        n = 0
        due = started + interval * index / callers
        while time.perf_counter() < deadline:
            if interval:
                due = max(due + interval, time.perf_counter())
                await asyncio.sleep(due - time.perf_counter())
            order = f"{run}-{index}-{n}"
            a, b = rng.sample(SKUS, 2)
            items = [{"product_id": a, "quantity": 1}, {"product_id": b, "quantity": 1}]
            created = v.reserve(
                order, items, None, container.limits, source=Source.STREAM, event_id=f"{order}-c"
            )
            await container.engine.reserve(created)
            await container.engine.commit(Commit(order, Source.STREAM, event_id=f"{order}-p"))
            done += 1
            n += 1

    await asyncio.gather(*(caller(i) for i in range(callers)))
    return done / (time.perf_counter() - started)


# one chunk of past orders [lo, hi): each committed, two lines, as the engine leaves them
FILL = [
    "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
    "last_event_id, allow_partial, created_at, updated_at) "
    "SELECT 'past-' || g, 'COMMITTED', jsonb_build_array("
    "jsonb_build_object('product_id', a, 'variant_id', null, 'quantity', 1, "
    "'warehouse_id', null), jsonb_build_object('product_id', b, 'variant_id', null, "
    "'quantity', 1, 'warehouse_id', null)), 900, t, 2, 'past-' || g || '-p', false, t, t "
    "FROM generate_series(:lo, :hi - 1) AS g, LATERAL (SELECT "
    "now() - (g::bigint * 7919 % :span) * interval '1 second' AS t, "
    "'sku-' || lpad((g % 1000)::text, 4, '0') AS a, "
    "'sku-' || lpad(((g + 500) % 1000)::text, 4, '0') AS b) AS x",
    "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, "
    "quantity, status, expires_at, created_at, updated_at) "
    "SELECT gen_random_uuid(), o.order_id, s.id, s.product_id, NULL, s.warehouse_id, 1, "
    "'COMMITTED', o.created_at, o.created_at, o.created_at FROM orders o "
    "CROSS JOIN LATERAL jsonb_array_elements(o.items) AS i "
    "JOIN stocks s ON s.product_id = i->>'product_id' "
    "WHERE o.order_id IN (SELECT 'past-' || g FROM generate_series(:lo, :hi - 1) AS g)",
    "INSERT INTO processed_events (topic, event_id, order_id, processed_at) "
    "SELECT k, 'past-' || g || '-' || left(k, 1), 'past-' || g, "
    "now() - (g::bigint * 7919 % :span) * interval '1 second' "
    "FROM generate_series(:lo, :hi - 1) AS g CROSS JOIN (VALUES ('created'), ('paid')) AS e(k)",
    "INSERT INTO order_history (order_id, from_state, to_state, published, cause, at) "
    "SELECT 'past-' || g, f, t, t, 'past-' || g || c, "
    "now() - (g::bigint * 7919 % :span) * interval '1 second' "
    "FROM generate_series(:lo, :hi - 1) AS g "
    "CROSS JOIN (VALUES (NULL, 'RESERVED', '-c'), ('RESERVED', 'COMMITTED', '-p')) AS e(f, t, c)",
    "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, quantity, "
    "available_after, reserved_after, total_after, order_id, actor, created_at) "
    "SELECT r.stock_id, r.product_id, r.warehouse_id, op, 1, 999999999999, 1, 1000000000000, "
    "r.order_id, 'engine', r.created_at FROM reservations r "
    "CROSS JOIN (VALUES ('RESERVE'), ('COMMIT')) AS e(op) "
    "WHERE r.order_id IN (SELECT 'past-' || g FROM generate_series(:lo, :hi - 1) AS g)",
]


async def database_size(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        size = await conn.scalar(text("SELECT pg_database_size(current_database())"))
    return int(size or 0)


async def fill_past(db: AsyncEngine, orders: int) -> None:
    async with db.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        oldest = datetime.now(UTC) - timedelta(seconds=PAST_SPAN_S)
        month = partitions.month_start(oldest)
        while month <= datetime.now(UTC):
            await partitions.ensure_ahead(raw, month, 0)
            month = partitions.next_month(month)
        await conn.rollback()
    for lo in range(0, orders, FILL_CHUNK):
        hi = min(lo + FILL_CHUNK, orders)
        async with db.begin() as conn:
            await conn.execute(text("SET LOCAL statement_timeout = 0"))
            for statement in FILL:
                await conn.execute(text(statement), {"lo": lo, "hi": hi, "span": PAST_SPAN_S})
        print(f"filled {hi:,} past orders", file=sys.stderr, flush=True)
    autocommit = db.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn:
        await conn.execute(text("SET statement_timeout = 0"))
        await conn.execute(text("VACUUM ANALYZE"))


async def tombstone_bytes(db: AsyncEngine, n: int = 200_000) -> int:
    """What a tombstone costs: the table and its indexes over ``n`` ids shaped like the bench's."""
    async with db.begin() as conn:
        await conn.execute(text("TRUNCATE order_tombstones"))
        await conn.execute(
            text(
                "INSERT INTO order_tombstones (order_id, final_state) SELECT "
                "'tomb-' || g || '-' || md5(g::text), 'COMMITTED' FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
    async with db.begin() as conn:
        size = await conn.scalar(text("SELECT pg_total_relation_size('order_tombstones')"))
        await conn.execute(text("TRUNCATE order_tombstones"))
    return round(int(size or 0) / n)


async def table_sizes(db: AsyncEngine) -> dict[str, list[int]]:
    """The largest tables at the end: [MiB with indexes and TOAST, live rows, dead rows]."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT relname, pg_total_relation_size(relid) AS size, n_live_tup, n_dead_tup "
                "FROM pg_stat_user_tables ORDER BY size DESC LIMIT 10"
            )
        )
        return {r.relname: [round(r.size / 2**20), r.n_live_tup, r.n_dead_tup] for r in rows}


async def row_counts(db: AsyncEngine) -> dict[str, int]:
    counts = {}
    async with db.connect() as conn:
        for table in PRUNED_TABLES:
            counts[table] = int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
    return counts


async def grow(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    async with build(settings) as container:
        await stock_up(container, SKUS)
        await order_load(container, 3, args.callers, "warm")
        fresh = await order_load(container, args.load_seconds, args.callers, "fresh")
        shape = await row_counts(container.db)
        before = await database_size(container.db)
        await fill_past(container.db, args.past_orders)
        after = await database_size(container.db)
        past_tables = await table_sizes(container.db)
        grown = await order_load(container, args.load_seconds, args.callers, "grown")
        tombstone = await tombstone_bytes(container.db)
    return {
        "fresh_orders_per_s": round(fresh, 1),
        "grown_orders_per_s": round(grown, 1),
        "grown_over_fresh": round(grown / fresh, 3),
        "bytes_per_order": round((after - before) / max(args.past_orders, 1)),
        "engine_rows_per_order": shape,
        "tombstone_bytes": tombstone,
        "past_tables": past_tables,
    }


async def steady(settings: Settings, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    retained = settings.model_copy(
        update={
            "dedup_window": MINUTE,
            "order_retention": MINUTE,
            "tombstone_retention": MINUTE,
            "movement_retention": MINUTE,
            "outbox_retention_hours": 1 / 60,
            "prune_interval_s": args.prune_interval,
        }
    )
    async with build(retained) as container:
        async with container.db.begin() as conn:
            await conn.execute(
                text(
                    "TRUNCATE orders, reservations, processed_events, order_history, "
                    "stock_movements, order_tombstones, outbox"
                )
            )
        await ensure_topics(retained)
        relay = OutboxRelay(retained)
        pruner = Pruner(retained)
        await relay.start()
        await pruner.start()
        samples: list[tuple[float, int]] = []
        started = time.perf_counter()

        async def sample() -> None:
            while True:
                size = await database_size(container.db)
                samples.append((round(time.perf_counter() - started, 1), size))
                tables = await table_sizes(container.db)
                largest = " ".join(f"{name}={mib}" for name, (mib, _, _) in tables.items())
                at = samples[-1][0]
                print(f"t={at:>6}s size={size / 2**20:8.1f} MiB ({largest})", flush=True)
                await asyncio.sleep(args.sample_seconds)

        sampler = asyncio.create_task(sample())
        try:
            achieved = await order_load(
                container, args.steady_seconds, args.callers, "steady", rate
            )
        finally:
            sampler.cancel()
            await pruner.stop()
            await relay.stop()
        samples.append((round(time.perf_counter() - started, 1), await database_size(container.db)))
        tables = await table_sizes(container.db)
    end_t, end_size = samples[-1]
    minute_ago = min(samples, key=lambda s: abs(s[0] - (end_t - 60)))
    return {
        "steady_rate": round(rate, 1),
        "steady_orders_per_s": round(achieved, 1),
        "steady_growth_last_minute": round((end_size - minute_ago[1]) / end_size, 4),
        "steady_size_series": samples,
        "steady_tables": tables,
    }


def plot(samples: list[tuple[float, int]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    figure, axes = pyplot.subplots(figsize=(7, 3.5))
    axes.plot([t for t, _ in samples], [size / 2**20 for _, size in samples], marker="o")
    axes.set_xlabel("seconds of load (every retention 60 s)")
    axes.set_ylabel("pg_database_size (MiB)")
    axes.set_ylim(bottom=0)
    axes.grid(True)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--past-orders", type=int, default=10_000_000)
    parser.add_argument("--steady-seconds", type=float, default=180)
    parser.add_argument("--load-seconds", type=float, default=20)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--prune-interval", type=float, default=5)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument(
        "--steady-rate",
        type=float,
        default=None,
        help=f"orders/s of the steady run (default: {STEADY_SHARE} of the slower measured rate)",
    )
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    with bench_stack() as (_stack, settings):
        figures = asyncio.run(grow(settings, args))
        rate = args.steady_rate or STEADY_SHARE * min(
            figures["fresh_orders_per_s"], figures["grown_orders_per_s"]
        )
        steady_figures = asyncio.run(steady(settings, args, rate))
    if args.plot is not None:
        plot(steady_figures["steady_size_series"], args.plot)
    print(
        json.dumps(
            {
                "bench": "growth",
                "past_orders": args.past_orders,
                **figures,
                **steady_figures,
                "targets": {"grown_over_fresh": 0.9, "steady_growth_last_minute": 0.05},
            }
        )
    )


if __name__ == "__main__":
    main()
