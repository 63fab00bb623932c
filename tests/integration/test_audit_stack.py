"""``inventory audit`` against the real broker and PostgreSQL of the test stack.

(a) events applied by a real stream worker, offsets committed: clean; (b) the same with an
event's processed row and its order deleted by hand: lost; (c) events nobody consumed:
pending, exit 1. Each test has topics and a consumer group of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from service.bootstrap import build
from service.config import Settings
from service.domain.commands import UpdateStock
from service.domain.values import Sku, StockOperation
from streams.audit import AuditReport, CannotAudit, audit
from streams.worker import StreamWorker
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

WHEN = "2024-05-01T12:00:00Z"


def isolated(settings: Settings) -> Settings:
    return settings.isolated(uuid.uuid4().hex[:8], topic_partitions=2, broker_commit_interval_s=0.5)


async def create_topics(settings: Settings, names: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, settings.topic_partitions, 1) for n in names])
    finally:
        await admin.close()


async def topic_names(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@dataclass
class Orders:
    """Produces order events, each its own batch (send_and_wait), on partition 0 or 1."""

    settings: Settings
    producer: AIOKafkaProducer

    async def send(
        self, topic: str, body: dict[str, Any] | bytes, partition: int, at: datetime | None = None
    ) -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        stamp = None if at is None else int(at.timestamp() * 1000)
        meta = await self.producer.send_and_wait(
            topic, raw, key=b"k", partition=partition, timestamp_ms=stamp
        )
        return int(meta.offset)

    async def created(self, order: str, sku: str, event: str, partition: int = 0, **kw: Any) -> int:
        body = {
            "event_id": event,
            "order_id": order,
            "items": [{"product_id": sku, "quantity": 1}],
            "occurred_at": WHEN,
        }
        return await self.send(self.settings.topic_order_created, body, partition, **kw)

    async def paid(self, order: str, event: str, partition: int = 0) -> int:
        body = {"event_id": event, "order_id": order, "occurred_at": WHEN}
        return await self.send(self.settings.topic_order_paid, body, partition)

    async def cancelled(self, order: str, event: str, partition: int = 0) -> int:
        body = {"event_id": event, "order_id": order, "occurred_at": WHEN, "reason": "no"}
        return await self.send(self.settings.topic_order_cancelled, body, partition)

    async def extended(self, order: str, event: str, partition: int = 0) -> int:
        body = {"event_id": event, "order_id": order, "ttl_seconds": 600, "occurred_at": WHEN}
        return await self.send(self.settings.topic_order_extended, body, partition)


@pytest.fixture
async def topics(settings: Settings) -> Settings:
    """Isolated settings whose order topics exist (the DLQ does not: the worker makes it)."""
    isolated_settings = isolated(settings)
    await create_topics(isolated_settings, isolated_settings.order_topics)
    return isolated_settings


@pytest.fixture
async def orders(topics: Settings) -> AsyncIterator[Orders]:
    producer = AIOKafkaProducer(bootstrap_servers=topics.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        yield Orders(topics, producer)
    finally:
        await producer.stop()


async def committed_and_ends(settings: Settings) -> tuple[dict[Any, int], dict[Any, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [
            TopicPartition(t, p)
            for t in settings.order_topics
            for p in range(settings.topic_partitions)
        ]
        ends = await consumer.end_offsets(tps)
        offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=tps)
        return {tp: m.offset for tp, m in offsets.items()}, ends
    finally:
        await admin.close()
        await consumer.stop()


async def apply_with_a_worker(settings: Settings, processed_rows: int) -> None:
    """Run a real stream worker until it processed the events and committed their offsets."""
    async with build(settings) as container:
        worker = StreamWorker(settings, container)
        await worker.start()
        progress: dict[str, Any] = {}

        async def applied_and_committed() -> bool:
            async with container.db.connect() as conn:
                rows = (
                    await conn.execute(text("SELECT count(*) FROM processed_events"))
                ).scalar_one()
            committed, ends = await committed_and_ends(settings)
            progress.update(rows=rows, committed=committed)
            done = all(committed.get(tp, -1) >= end for tp, end in ends.items() if end)
            return rows >= processed_rows and done

        def worker_running() -> None:
            assert worker.running, "the worker stopped"

        try:
            await wait_for(
                applied_and_committed,
                within_s=90,
                what=f"{processed_rows} events applied and their offsets committed",
                every_s=0.1,
                alive=[worker_running],
                diagnose=lambda: str(progress),
            )
        finally:
            await worker.stop()


async def stock(settings: Settings, sku: str, quantity: int) -> None:
    async with build(settings) as container:
        await container.engine.update_stock(
            UpdateStock(Sku(sku), "default", StockOperation.SET, quantity, "audit test")
        )


@dataclass
class Applied:
    settings: Settings
    cancelled_order: str
    created_event: str
    created_offset: int


async def a_day_of_orders(orders: Orders) -> Applied:
    """Four orders, a duplicate and an undecodable record, all applied by a real worker."""
    sku, run = f"sku-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    await stock(orders.settings, sku, 2)
    await orders.created(f"o1-{run}", sku, f"c1-{run}")
    await orders.created(f"o1-{run}", sku, f"c1-{run}", partition=1)  # a copy, same event id
    await orders.paid(f"o1-{run}", f"p1-{run}")
    offset = await orders.created(f"o2-{run}", sku, f"c2-{run}")
    await orders.cancelled(f"o2-{run}", f"x2-{run}", partition=1)
    await orders.created(f"o3-{run}", sku, f"c3-{run}", partition=1)
    await orders.created(f"o4-{run}", sku, f"c4-{run}", partition=1)  # out of stock: REJECTED
    await orders.paid(f"o5-{run}", f"p5-{run}")  # paid early, never created
    await orders.send(orders.settings.topic_order_created, b"not json", partition=0)
    await apply_with_a_worker(orders.settings, processed_rows=7)  # the copy is the same event
    return Applied(orders.settings, f"o2-{run}", f"c2-{run}", offset)


def assert_clean(report: AuditReport) -> None:
    assert report.clean, "\n".join(report.lines())


async def test_a_clean_run_reports_nothing(orders: Orders) -> None:
    applied = await a_day_of_orders(orders)
    report = await audit(applied.settings)
    assert_clean(report)
    assert report.read == 9  # the copy and the undecodable record included
    assert report.dead_letters == 1
    assert report.orders_checked == 4
    assert report.lines()[-1] == "clean"
    assert run_cli(applied.settings).returncode == 0


async def test_events_deleted_from_the_ledger_are_lost(orders: Orders, db_engine: Any) -> None:
    applied = await a_day_of_orders(orders)
    async with db_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM processed_events WHERE topic = 'created' AND event_id = :e"),
            {"e": applied.created_event},
        )
        await conn.execute(
            text("DELETE FROM orders WHERE order_id = :o"), {"o": applied.cancelled_order}
        )
    report = await audit(applied.settings)
    topic = applied.settings.topic_order_created
    assert [(u.position.topic, u.position.offset, u.event_id) for u in report.lost] == [
        (topic, applied.created_offset, applied.created_event)
    ]
    assert report.lost[0].order_id == applied.cancelled_order
    assert report.pending == []
    assert [r.line() for r in report.lost_ranges] == [
        f"{topic}[0] {applied.created_offset} lost (1 event)"
    ]
    (order,) = report.disagreeing
    assert order.order_id == applied.cancelled_order and order.state is None
    assert order.problem == f"no ledger row: its created event {applied.created_event} is lost"
    assert not report.clean


async def test_events_a_stopped_worker_left_are_pending(orders: Orders) -> None:
    run = uuid.uuid4().hex[:6]
    for n in range(3):
        await orders.created(f"o{n}-{run}", "sku", f"c{n}-{run}", partition=n % 2)
    await orders.send(orders.settings.topic_order_paid, b"{}", partition=1)
    report = await audit(orders.settings)  # no DLQ topic yet: no dead letters
    assert report.lost == []
    assert [(u.position.offset, u.committed) for u in report.pending] == [
        (0, None),
        (1, None),
        (0, None),
        (0, None),
    ]
    assert report.disagreeing == []
    assert report.orders_pending == sorted(f"o{n}-{run}" for n in range(3))
    assert orders.settings.topic_dlq not in await topic_names(orders.settings)

    result = run_cli(orders.settings)
    assert result.returncode == 1, result.stdout + result.stderr
    pending = [line for line in result.stdout.splitlines() if line.startswith("pending")]
    assert len(pending) == 4
    assert "NOT CLEAN" in result.stdout
    as_json = run_cli(orders.settings, "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["counts"]["pending"] == 4


async def test_the_window_since_a_time_and_from_an_offset(orders: Orders) -> None:
    now = datetime.now(UTC)
    old, new = now - timedelta(hours=2), now + timedelta(minutes=5)
    for n in range(2):
        await orders.created(f"old-{n}", "sku", f"old-{n}", at=old)
    for n in range(3):
        await orders.created(f"new-{n}", "sku", f"new-{n}", at=new)
    since = await audit(orders.settings, since=now)
    assert [u.event_id for u in since.pending] == ["new-0", "new-1", "new-2"]
    topic = orders.settings.topic_order_created
    start = await audit(orders.settings, start_offsets={(topic, 0): 3})
    assert [u.event_id for u in start.pending] == ["new-1", "new-2"]
    with pytest.raises(CannotAudit, match="names no partition"):
        await audit(orders.settings, start_offsets={(topic, 9): 0})


async def test_a_batch_that_straddles_the_end_is_read_whole(orders: Orders) -> None:
    # Tansu reports a partition's end as its last batch's base offset + 1
    producer = AIOKafkaProducer(bootstrap_servers=orders.settings.kafka_bootstrap, linger_ms=50)
    await producer.start()
    try:
        sent = [
            await producer.send(orders.settings.topic_order_created, b"{}", partition=0)
            for _ in range(20)
        ]
        await producer.flush()
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    report = await audit(orders.settings)
    assert report.read == 20
    assert [u.position.offset for u in report.pending] == list(range(20))


async def test_extensions_are_accounted_for_by_their_processed_rows(
    orders: Orders, db_engine: Any
) -> None:
    """An order-extended event never changes an order's state (EXTENDED keeps it RESERVED,
    NOT_EXTENDED changes nothing), so its processed_events row is its only trace: without it,
    once the group is past it, it is lost, and its order does not disagree."""
    sku, run = f"sku-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    await stock(orders.settings, sku, 2)
    await orders.created(f"o1-{run}", sku, f"c1-{run}")
    # EXTENDED, or NOT_EXTENDED if it overtakes the created event (another topic): either way
    # it is processed and claimed
    offset = await orders.extended(f"o1-{run}", f"x1-{run}")
    await orders.extended(f"ghost-{run}", f"x2-{run}", partition=1)  # NOT_EXTENDED
    await orders.send(orders.settings.topic_order_extended, b'{"ttl_seconds": 0}', partition=1)
    await apply_with_a_worker(orders.settings, processed_rows=3)

    report = await audit(orders.settings)
    assert_clean(report)
    topic = orders.settings.topic_order_extended
    assert report.read_by_topic[topic] == 3 and report.dead_letters == 1
    assert report.orders_checked == 1

    async with db_engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM processed_events WHERE topic = 'extended' AND event_id = :e"),
            {"e": f"x1-{run}"},
        )
    report = await audit(orders.settings)
    assert [(u.position.topic, u.position.offset, u.event_id) for u in report.lost] == [
        (topic, offset, f"x1-{run}")
    ]
    assert report.disagreeing == [] and report.pending == []
    assert not report.clean


async def test_a_missing_order_topic_is_not_created(settings: Settings) -> None:
    missing = isolated(settings)
    present = (
        missing.topic_order_created,
        missing.topic_order_paid,
        missing.topic_order_extended,
        missing.topic_order_returned,
    )
    await create_topics(missing, present)
    with pytest.raises(CannotAudit, match=f"order topic {missing.topic_order_cancelled} "):
        await audit(missing)
    assert missing.topic_order_cancelled not in await topic_names(missing)
    result = run_cli(missing)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 2  # where it connected, then why it could not run
    assert "does not exist" in result.stderr.splitlines()[-1]


def run_cli(settings: Settings, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "audit", *argv],
        env={**os.environ, **settings.as_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_broker_is_one_line_and_exit_2(settings: Settings) -> None:
    result = run_cli(settings, INVENTORY_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert result.returncode == 2
    assert result.stdout == ""
    where, failure = result.stderr.splitlines()
    assert where.startswith("inventory audit: connecting to PostgreSQL"), where
    assert failure.startswith("inventory audit: could not run: Kafka at 127.0.0.1:1: ")
