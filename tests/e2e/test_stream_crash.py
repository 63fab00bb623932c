"""kill -9 the worker process in the middle of 5,000 orders, restart it, and check the books.

Every order must have exactly one outcome (in the ledger and on ``inventory-reservations``),
the stock invariants must hold, and every committed change must have reached
``stock-changed`` at least once, in version order per stock row.
"""

from __future__ import annotations

import signal
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.devtools import load_generator
from service.devtools.observe import TopicCollector
from service.invariants import check
from streams.app import ensure_topics
from streams.audit import audit
from tests.e2e.worker_process import at_least, at_most, count, start_worker, still_running, stop
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

ORDERS = 5_000
SKUS = 20
STOCK_PER_SKU = 400  # about half the demand: a mix of RESERVED and REJECTED


def crash_settings(overrides: dict[str, Any]) -> Settings:
    return Settings(**overrides).isolated(
        uuid.uuid4().hex[:8],
        topic_partitions=4,
        broker_commit_interval_s=0.5,  # some offsets are committed before the kill
        http_port=0,
    )


@pytest.mark.timeout(240)
async def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(
    stack: Any, migrated: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = crash_settings(stack.overrides)
    await ensure_topics(settings)
    config = load_generator.LoadConfig(
        count=ORDERS,
        rate=0,
        skus=SKUS,
        hot_skus=5,
        hot_share=0.5,
        created=1,
        paid=0,
        cancelled=0,
        max_items=2,
        max_quantity=3,
        prefix=f"CRASH{uuid.uuid4().hex[:6]}",
        seed=7,
    )
    await load_generator.seed_stock(config, settings, STOCK_PER_SKU)
    report = await load_generator.publish(config, settings, keep_order_ids=True)
    assert len(report.order_ids) == ORDERS

    log_path = tmp_path / "worker.log"
    orders = "SELECT count(*) FROM orders"
    first = start_worker(settings, log_path)
    try:
        await wait_for(
            lambda: at_least(db_engine, orders, 2_000),
            within_s=90,
            what="the first 2,000 orders",
            alive=[still_running(first)],
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done_at_kill = await count(db_engine, orders)
    assert done_at_kill < ORDERS, "the worker finished before it could be killed"
    committed_at_kill = await committed_offsets(settings)

    second = start_worker(settings, log_path)
    try:
        await wait_for(
            lambda: at_least(db_engine, orders, ORDERS),
            within_s=120,
            what="all orders",
            alive=[still_running(second)],
        )
        await wait_for(
            lambda: at_most(db_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL", 0),
            within_s=60,
            what="the outbox drained",
            alive=[still_running(second)],
        )
    finally:
        stop(second)
    print(
        f"killed after {done_at_kill} of {ORDERS} orders, {committed_at_kill} offsets committed: "
        f"{done_at_kill - committed_at_kill} processed events were redelivered; log: {log_path}"
    )

    out = TopicCollector(
        settings.kafka_bootstrap, [settings.topic_reservations, settings.topic_stock_changed]
    )
    await out.start()
    try:
        await out.wait_caught_up()
    finally:
        await out.stop()

    await assert_one_outcome_per_order(db_engine, out, settings, report.order_ids)
    assert await check(db_engine) == []
    stream = await audit(settings)  # every event in the topics has its effect in the ledger
    assert stream.clean, "\n".join(stream.lines()[:40])
    await assert_every_change_published_in_order(db_engine, out, settings)


async def committed_offsets(settings: Settings) -> int:
    """The sum of the worker group's committed offsets on order-created."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        total = 0
        for partition in range(settings.topic_partitions):
            offset = await consumer.committed(
                TopicPartition(settings.topic_order_created, partition)
            )
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def assert_one_outcome_per_order(
    db: AsyncEngine, out: TopicCollector, settings: Settings, order_ids: list[str]
) -> None:
    async with db.connect() as conn:
        states = dict((await conn.execute(text("SELECT order_id, state FROM orders"))).all())
        processed = (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()
        doubled = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT r.order_id FROM reservations r "
                    "JOIN stock_movements m ON m.order_id = r.order_id "
                    "AND m.stock_id = r.stock_id AND m.operation = 'RESERVE' "
                    "GROUP BY r.order_id, r.stock_id HAVING count(*) > 1) d"
                )
            )
        ).scalar_one()
    assert set(states) == set(order_ids)
    assert set(states.values()) <= {"RESERVED", "REJECTED"}
    assert {"RESERVED", "REJECTED"} <= set(states.values())  # the run exercised both
    assert processed == len(order_ids)
    assert doubled == 0, "an order reserved the same stock twice"

    published: dict[str, set[str]] = defaultdict(set)
    for record in out.records[settings.topic_reservations]:
        published[record.value["order_id"]].add(record.value["status"])
    missing = [o for o in order_ids if o not in published]
    assert not missing, f"{len(missing)} orders have no result event, e.g. {missing[:3]}"
    conflicting = {o: s for o, s in published.items() if s != {states[o]}}
    assert not conflicting, f"orders with another outcome than the ledger: {conflicting}"


async def assert_every_change_published_in_order(
    db: AsyncEngine, out: TopicCollector, settings: Settings
) -> None:
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT key, payload FROM outbox WHERE topic = :t ORDER BY id"),
                {"t": settings.topic_stock_changed},
            )
        ).all()
    committed = {(key, payload["warehouse_id"], payload["version"]) for key, payload in rows}
    assert committed, "no stock change was committed"
    versions: dict[tuple[str, str], list[int]] = defaultdict(list)
    duplicates = 0
    for record in out.records[settings.topic_stock_changed]:
        value = record.value
        row = (record.key or "", value["warehouse_id"])
        seen = versions[row]
        if value["version"] in seen:
            duplicates += 1
            continue
        assert not seen or value["version"] > seen[-1], (row, seen[-3:], value["version"])
        seen.append(value["version"])
    published = {(key, wh, v) for (key, wh), vs in versions.items() for v in vs}
    assert committed <= published, f"{len(committed - published)} committed changes never published"
    print(f"stock-changed: {len(published)} versions, {duplicates} duplicates after the crash")
