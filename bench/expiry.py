"""Expiry at volume: 100,000 reservations falling due within the same minute.

One worker process (``inventory serve --role worker``: order agents, outbox relay, expiry
agent, timer and sweeper) on the embedded stack. This process makes the reservations through
the engine (the relay publishes their RESERVED events, the expiry agent schedules them), with
TTLs chosen so that every deadline falls in one minute that starts after the last reservation
is made; then it waits until all are EXPIRED.

Figures come from the database: the expiry lag of an order is ``orders.updated_at`` (the start
of the transaction that expired it) minus its ``expires_at``; ``seconds_to_all_expired`` runs
from the last deadline to the last expiry. The worker's own counters (expired by the timer,
sweeper catches) are read from its ``/metrics``. Prints one JSON line last:
{"bench": "expiry", "reservations", "seconds_to_all_expired", "lag_p50_s", "lag_p99_s", ...}.
Targets: all expired within 10 s of their deadline, p99 lag < 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from bench.pipeline import (
    peak_rss_mb,
    profile,
    run_settings,
    start_worker,
    stop_worker,
    wait_ready,
)
from bench.stack import bench_stack
from service.bootstrap import Container, build
from service.config import Settings
from service.devtools.ports import free_port
from service.domain.commands import Reserve, Source, UpdateStock
from service.domain.errors import InventoryError
from service.domain.values import Item, Sku, StockOperation
from streams.app import ensure_topics
from streams.expiry.agent import TABLE_NAME

SKUS = 100
CHUNK = 2_000
WINDOW_S = 60.0
TARGETS = {"seconds_to_all_expired": 10.0, "lag_p99_s": 5.0}


def sku(run: str, i: int) -> Sku:
    return Sku(f"EXP-{run}-{i % SKUS}")


async def seed(container: Container, run: str, per_sku: int) -> None:
    for i in range(SKUS):
        await container.engine.update_stock(
            UpdateStock(sku(run, i), "default", StockOperation.SET, per_sku, "bench stock")
        )


async def reserve_chunk(
    container: Container, run: str, orders: list[tuple[str, int, int]]
) -> float:
    """Reserve (order id, sku index, ttl) each; returns the time it took."""
    started = time.perf_counter()
    commands = [
        Reserve(order, (Item(sku(run, i), 1),), ttl_seconds=ttl, source=Source.API)
        for order, i, ttl in orders
    ]
    results = await container.engine.execute_many(commands)
    failed = [r for r in results if isinstance(r, InventoryError)]
    if failed:
        raise RuntimeError(f"{len(failed)} reservations failed, e.g. {failed[0]!r}")
    return time.perf_counter() - started


async def make_reservations(
    container: Container, run: str, count: int, lead_s: float | None
) -> dict[str, float]:
    """A warm-up chunk (TTL 900 s, not measured) sets the pace; then the measured ones."""
    warm = [(f"W-{run}-{i}", i, 900) for i in range(CHUNK)]
    rate = CHUNK / await reserve_chunk(container, run, warm)
    lead = lead_s if lead_s is not None else count / rate * 1.5 + 15
    window_start = time.time() + lead
    created_at = time.perf_counter()
    for start in range(0, count, CHUNK):
        chunk = []
        for i in range(start, min(start + CHUNK, count)):
            target = window_start + WINDOW_S * i / count
            ttl = max(1, math.ceil(target - time.time()))
            chunk.append((f"M-{run}-{i}", i, ttl))
        await reserve_chunk(container, run, chunk)
    seconds = time.perf_counter() - created_at
    left = window_start - time.time()
    if left < 0:
        print(f"warning: reservations took {-left:.0f}s past the window start", file=sys.stderr)
    return {
        "create_per_s": count / seconds,
        "window_start": window_start,
        "lead_s": lead,
        "created_before_window_s": left,
    }


async def expired_count(container: Container, prefix: str) -> int:
    async with container.db.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM orders WHERE state = 'EXPIRED' AND order_id LIKE :p"
                    ),
                    {"p": f"{prefix}%"},
                )
            ).scalar_one()
        )


async def lags(container: Container, prefix: str) -> dict[str, tuple[float, float, float]]:
    """order id -> (created_at, expires_at, expired_at) in epoch seconds, measured orders."""
    async with container.db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT order_id, extract(epoch FROM created_at)::float8, "
                "extract(epoch FROM expires_at)::float8, "
                "extract(epoch FROM updated_at)::float8 FROM orders "
                "WHERE order_id LIKE :p AND state = 'EXPIRED'"
            ),
            {"p": f"{prefix}%"},
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def scheduled_at(settings: Settings) -> dict[str, float]:
    """When the expiry agent first wrote each order into the table: its changelog timestamp."""
    topic = f"{settings.app_id}-{TABLE_NAME}-changelog"
    return await first_timestamps(settings, topic, json.loads)


async def published_at(settings: Settings) -> dict[str, float]:
    """When the outbox relay published each order's first event (RESERVED)."""
    return await first_timestamps(settings, settings.topic_reservations, bytes.decode)


async def first_timestamps(settings: Settings, topic: str, key_of: Any) -> dict[str, float]:
    """The timestamp of the first record with a value of each key of a topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=10_000,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()  # no public API for a refresh
            ids = consumer.partitions_for_topic(topic) or ()
            partitions = [TopicPartition(topic, p) for p in ids]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        first: dict[str, float] = {}
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for m in messages:
                    if m.value is not None and m.key is not None:
                        first.setdefault(key_of(m.key), m.timestamp / 1000)
        return first
    finally:
        await consumer.stop()


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def scrape(port: int) -> dict[str, float]:
    """The worker's counters that say who expired what."""
    wanted = {
        'inventory_reservations_expired_total{via="timer"}': "expired_by_timer",
        'inventory_reservations_expired_total{via="sweeper"}': "expired_by_sweeper",
        "inventory_expiry_sweeper_catches_total": "sweeper_catches",
    }
    figures = dict.fromkeys(wanted.values(), 0.0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    except OSError as exc:
        print(f"could not read the worker's metrics: {exc}", file=sys.stderr)
        return figures
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            figures[wanted[name]] = float(value)
    return figures


async def measure(settings: Settings, count: int, lead_s: float | None) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    prefix = f"M-{run}-"
    async with build(settings) as container:
        await seed(container, run, per_sku=(count + CHUNK) // SKUS * 2)
        made = await make_reservations(container, run, count, lead_s)
        deadline = made["window_start"] + WINDOW_S + 300
        while await expired_count(container, prefix) < count:
            if time.time() > deadline:
                raise TimeoutError("not every reservation expired within 5 minutes of the window")
            await asyncio.sleep(0.5)
        orders = await lags(container, prefix)
    written = await scheduled_at(settings)
    published = await published_at(settings)
    pairs = [(expires, expired) for _, expires, expired in orders.values()]
    delays = sorted(written[o] - created for o, (created, _, _) in orders.items() if o in written)
    relay = sorted(published[o] - c for o, (c, _, _) in orders.items() if o in published)
    agent = sorted(written[o] - published[o] for o in orders if o in written and o in published)
    late = sum(1 for o, (_, expires, _) in orders.items() if written.get(o, 0.0) > expires)
    lag = sorted(expired - expires for expires, expired in pairs)
    last_deadline = max(expires for expires, _ in pairs)
    first_deadline = min(expires for expires, _ in pairs)
    tenths: list[list[float]] = [[] for _ in range(10)]
    span = max(last_deadline - first_deadline, 1e-9)
    for expires, expired in pairs:
        tenths[min(int((expires - first_deadline) / span * 10), 9)].append(expired - expires)
    return {
        "reservations": len(pairs),
        "seconds_to_all_expired": round(max(e for _, e in pairs) - last_deadline, 3),
        "lag_p50_s": round(percentile(lag, 0.50), 3),
        "lag_p99_s": round(percentile(lag, 0.99), 3),
        "lag_max_s": round(lag[-1], 3),
        "deadline_spread_s": round(last_deadline - first_deadline, 1),
        "create_per_s": round(made["create_per_s"], 1),
        "created_before_window_s": round(made["created_before_window_s"], 1),
        "schedule_delay_p50_s": round(percentile(delays, 0.50), 3) if delays else None,
        "schedule_delay_p99_s": round(percentile(delays, 0.99), 3) if delays else None,
        "scheduled_after_deadline": late,
        "relay_delay_p50_s": round(percentile(relay, 0.50), 3) if relay else None,
        "agent_delay_p50_s": round(percentile(agent, 0.50), 3) if agent else None,
        "agent_delay_p99_s": round(percentile(agent, 0.99), 3) if agent else None,
        "lag_p99_by_tenth_of_window_s": [
            round(percentile(sorted(t), 0.99), 2) if t else None for t in tenths
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reservations", type=int, default=100_000)
    parser.add_argument(
        "--lead-s",
        type=float,
        default=None,
        help="seconds from the start of creation to the first deadline (default: from the pace)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the worker for --profile-seconds"
    )
    parser.add_argument("--profile-seconds", type=float, default=60.0)
    args = parser.parse_args()

    with bench_stack() as (_, base):
        port = free_port()
        settings = run_settings(base).model_copy(update={"http_port": port})
        asyncio.run(ensure_topics(settings))
        log_path = Path(tempfile.mkstemp(prefix="inventory-bench-expiry-", suffix=".log")[1])
        worker = start_worker(settings, log_path)
        try:
            wait_ready(worker, log_path)
            spy = profile(worker.pid, args.profile, args.profile_seconds) if args.profile else None
            figures = asyncio.run(measure(settings, args.reservations, args.lead_s))
            counters = scrape(port)
            rss = peak_rss_mb(worker.pid)
            if spy is not None:
                spy.wait()
        finally:
            stop_worker(worker)
    print(f"worker log: {log_path}", file=sys.stderr)
    met = (
        figures["seconds_to_all_expired"] <= TARGETS["seconds_to_all_expired"]
        and figures["lag_p99_s"] < TARGETS["lag_p99_s"]
    )
    print(
        json.dumps(
            {
                "bench": "expiry",
                **figures,
                **{name: int(value) for name, value in counters.items()},
                "worker_peak_rss_mb": round(rss, 1),
                "targets": TARGETS,
                "targets_met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
