"""From an API commit to its ``stock-changed`` event on the broker: how long, p50 and p99.

The commits are made the way the API process makes them (the engine, in a process with no
relay of its own), one 1-item reservation at a time at ``--rate`` per second; the outbox relay
runs in a worker process (``inventory serve --role worker``) on the embedded stack. Each
outbox row records when its transaction began (``created_at``) and when the relay marked it
after the broker acknowledged it (``published_at``): the difference is the figure, read for
every row of the run. The relay is woken by the commit itself (PostgreSQL NOTIFY); its poll
interval (``--poll-ms``, the default setting unless given) is only the backstop, so the p99
should stay well below it. Prints one JSON line last:
{"bench": "outbox_latency", "p50_ms", "p99_ms", "max_ms", "poll_interval_ms", ...}.
Target: p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.pipeline import start_worker, stop_worker, wait_ready
from bench.stack import bench_stack
from service.bootstrap import build
from service.config import Settings
from service.domain.commands import Reserve, Source, UpdateStock
from service.domain.values import Item, Sku, StockOperation
from streams.app import ensure_topics

SKUS = [Sku(f"LAT-{i}") for i in range(10)]


async def commit_and_measure(settings: Settings, count: int, rate: float) -> list[float]:
    async with build(settings) as container:
        for sku in SKUS:
            await container.engine.update_stock(
                UpdateStock(sku, "default", StockOperation.SET, 10**9, "bench seed")
            )
        started = time.monotonic()
        async with container.db.connect() as conn:
            first_id = (
                await conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox"))
            ).scalar_one()
        for n in range(count):
            due = started + n / rate
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await container.engine.execute_many(
                [Reserve(f"lat-{n}", (Item(SKUS[n % len(SKUS)], 1),), 900, source=Source.API)]
            )
        query = text(
            "SELECT count(*) FILTER (WHERE published_at IS NULL), "
            "array_agg(extract(epoch FROM published_at - created_at)::float8) "
            "FROM outbox WHERE id > :first AND topic = :topic"
        )
        deadline = time.monotonic() + 60
        while True:
            async with container.db.connect() as conn:
                pending, seconds = (
                    await conn.execute(
                        query, {"first": first_id, "topic": settings.topic_stock_changed}
                    )
                ).one()
            if not pending:
                return [s for s in seconds if s is not None]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} outbox rows were never published")
            await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000, help="reservations committed")
    parser.add_argument("--rate", type=float, default=100.0, help="commits per second")
    parser.add_argument("--poll-ms", type=float, default=None, help="the relay's poll interval")
    args = parser.parse_args()
    with bench_stack() as (_, base):
        changes = {"http_port": 0}
        if args.poll_ms is not None:
            changes["outbox_poll_interval_ms"] = args.poll_ms
        settings = base.isolated(uuid.uuid4().hex[:8], **changes)
        asyncio.run(ensure_topics(settings))
        log = Path(tempfile.mkstemp(prefix="inventory-bench-relay-", suffix=".log")[1])
        worker = start_worker(settings, log)
        try:
            wait_ready(worker, log)
            seconds = asyncio.run(commit_and_measure(settings, args.count, args.rate))
        finally:
            stop_worker(worker)
    ms = sorted(s * 1000 for s in seconds)
    print(
        json.dumps(
            {
                "bench": "outbox_latency",
                "p50_ms": round(statistics.median(ms), 2),
                "p99_ms": round(ms[min(int(len(ms) * 0.99), len(ms) - 1)], 2),
                "max_ms": round(ms[-1], 2),
                "events": len(ms),
                "poll_interval_ms": settings.outbox_poll_interval_ms,
                "rate_per_s": args.rate,
                "targets": {"p99_ms": 100},
            }
        )
    )


if __name__ == "__main__":
    main()
