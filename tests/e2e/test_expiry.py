"""Reservation expiry end to end: order events in, the timer table expires, Kafka out.

One stream worker for the module, on topics of its own, with a 100 ms tick and the sweeper's
own rounds out of the way (the sweeper test runs a round by hand), so every expiry here is the
timer table's unless a test says otherwise. Tests poll for outcomes under generous timeouts and
never assert on timing; how long expiry took is printed (the figures belong to bench/expiry.py).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import text

from service.bootstrap import Container, build
from service.config import Settings
from service.devtools.observe import TopicCollector
from service.domain.commands import Reserve, Source, UpdateStock
from service.domain.values import Item, Sku, StockOperation
from service.invariants import check
from streams.worker import StreamWorker
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

WHEN = "2024-05-01T12:00:00Z"
WAIT_S = 30.0


def expiry_settings(overrides: dict[str, Any]) -> Settings:
    return Settings(**overrides).isolated(
        uuid.uuid4().hex[:8],
        topic_partitions=2,
        broker_commit_interval_s=0.5,
        expiry_tick_ms=100,
        expiry_sweep_interval_s=3600,  # rounds only by hand here
        expiry_sweep_grace_s=0,
    )


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels or None)
    return value or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Pipeline:
    settings: Settings
    container: Container
    worker: StreamWorker
    out: TopicCollector
    producer: AIOKafkaProducer

    async def send(self, topic: str, order: str, body: dict[str, Any]) -> None:
        await self.producer.send_and_wait(topic, json.dumps(body).encode(), key=order.encode())

    async def created(self, order: str, sku: str, quantity: int, ttl: int | None) -> None:
        body: dict[str, Any] = {
            "event_id": unique(f"{order}-created"),
            "order_id": order,
            "items": [{"product_id": sku, "quantity": quantity}],
            "occurred_at": WHEN,
        }
        if ttl is not None:
            body["ttl_seconds"] = ttl
        await self.send(self.settings.topic_order_created, order, body)

    async def paid(self, order: str) -> None:
        body = {"event_id": unique(f"{order}-paid"), "order_id": order, "occurred_at": WHEN}
        await self.send(self.settings.topic_order_paid, order, body)

    async def cancelled(self, order: str) -> None:
        body = {"event_id": unique(f"{order}-cancel"), "order_id": order, "occurred_at": WHEN}
        await self.send(self.settings.topic_order_cancelled, order, body)

    async def extended(self, order: str, ttl: int) -> None:
        body = {
            "event_id": unique(f"{order}-extended"),
            "order_id": order,
            "ttl_seconds": ttl,
            "occurred_at": WHEN,
        }
        await self.send(self.settings.topic_order_extended, order, body)

    async def stock(self, sku: str, quantity: int) -> None:
        await self.container.engine.update_stock(
            UpdateStock(Sku(sku), "default", StockOperation.SET, quantity, "test stock")
        )

    def events(self, order: str) -> list[dict[str, Any]]:
        return [r.value for r in self.out.by_key(self.settings.topic_reservations, order)]

    def statuses(self, order: str) -> list[str]:
        return [event["status"] for event in self.events(order)]

    async def outcome(self, order: str, *statuses: str) -> list[str]:
        await self.out.wait_for(
            lambda: len(self.statuses(order)) >= len(statuses),
            within_s=WAIT_S,
            what=f"{order} {statuses}",
        )
        return self.statuses(order)

    async def scheduled(self, order: str) -> None:
        """Until the worker's timer table and index hold the order."""
        expiry = self.worker.expiry
        assert expiry is not None
        await wait_for(
            lambda: order in expiry.schedule and order in expiry.table,
            within_s=WAIT_S,
            what=f"{order} scheduled",
        )

    async def unscheduled(self, order: str) -> None:
        expiry = self.worker.expiry
        assert expiry is not None
        await wait_for(
            lambda: order not in expiry.schedule and order not in expiry.table.data,
            within_s=WAIT_S,
            what=f"{order} out of the schedule",
        )

    async def levels(self, sku: str) -> tuple[int, int, int]:
        async with self.container.db.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT available, reserved, total FROM stocks WHERE product_id = :p"),
                    {"p": sku},
                )
            ).one()
        return row.available, row.reserved, row.total

    async def state(self, order: str) -> str:
        async with self.container.db.connect() as conn:
            return str(
                (
                    await conn.execute(
                        text("SELECT state FROM orders WHERE order_id = :o"), {"o": order}
                    )
                ).scalar_one()
            )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pipeline(stack: Any, migrated: Any) -> AsyncIterator[Pipeline]:
    settings = expiry_settings(stack.overrides)
    async with build(settings) as container:
        worker = StreamWorker(settings, container, summary_interval_s=5)
        await worker.start()
        out = TopicCollector(settings.kafka_bootstrap, [settings.topic_reservations])
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        await out.start()
        try:
            yield Pipeline(settings, container, worker, out, producer)
        finally:
            await out.stop()
            await producer.stop()
            await worker.stop()


def deadline_of(pipeline: Pipeline, order: str) -> float:
    reserved = next(e for e in pipeline.events(order) if e["status"] == "RESERVED")
    return datetime.fromisoformat(reserved["expires_at"]).timestamp()


@pytest.mark.parametrize("via", ["order-created", "ReserveStock"])
async def test_a_2s_reservation_expires_and_its_stock_comes_back(
    pipeline: Pipeline, via: str
) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    expired_before = metric("inventory_reservations_expired_total", via="timer")
    catches_before = metric("inventory_expiry_sweeper_catches_total")
    if via == "order-created":
        await pipeline.created(order, sku, 3, ttl=2)
    else:
        await pipeline.container.engine.reserve(
            Reserve(order, (Item(Sku(sku), 3),), ttl_seconds=2, source=Source.API)
        )
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]
    assert await pipeline.levels(sku) == (7, 3, 10)

    assert await pipeline.outcome(order, "RESERVED", "EXPIRED") == ["RESERVED", "EXPIRED"]
    seen_at = time.time()
    assert await pipeline.levels(sku) == (10, 0, 10)
    assert await pipeline.state(order) == "EXPIRED"
    expired = pipeline.events(order)[1]
    assert expired["items"][0]["product_id"] == sku and expired["items"][0]["quantity"] == 3
    assert metric("inventory_reservations_expired_total", via="timer") >= expired_before + 1
    assert metric("inventory_expiry_sweeper_catches_total") == catches_before
    await pipeline.unscheduled(order)
    assert await check(pipeline.container.db) == []
    print(f"EXPIRED seen {seen_at - deadline_of(pipeline, order):.2f}s after the deadline")


# The example extends to 30 s; any TTL well past the 5 s check proves the point, and
# 8 s keeps the test short (INVENTORY_MIN_TTL_SECONDS is 1).
EXTENDED_TTL_S = 8


async def test_an_extension_over_kafka_moves_the_timer_to_the_new_deadline(
    pipeline: Pipeline,
) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    timer_before = metric("inventory_reservations_expired_total", via="timer")
    catches_before = metric("inventory_expiry_sweeper_catches_total")
    started = time.time()
    await pipeline.created(order, sku, 3, ttl=2)
    await pipeline.outcome(order, "RESERVED")
    await pipeline.scheduled(order)
    await asyncio.sleep(max(started + 1 - time.time(), 0))
    await pipeline.extended(order, EXTENDED_TTL_S)
    assert await pipeline.outcome(order, "RESERVED", "EXTENDED") == ["RESERVED", "EXTENDED"]
    old_deadline = deadline_of(pipeline, order)
    extended = pipeline.events(order)[1]
    new_deadline = datetime.fromisoformat(extended["expires_at"]).timestamp()
    assert new_deadline >= old_deadline + EXTENDED_TTL_S - 3

    # well past the old deadline: still held, and the timer table has the new one
    await asyncio.sleep(max(started + 5 - time.time(), 0))
    assert await pipeline.state(order) == "RESERVED"
    assert pipeline.statuses(order) == ["RESERVED", "EXTENDED"]
    assert await pipeline.levels(sku) == (7, 3, 10)
    expiry = pipeline.worker.expiry
    assert expiry is not None
    assert expiry.table[order] == pytest.approx(new_deadline)

    # then it expires once, after the new deadline, by the timer table
    statuses = await pipeline.outcome(order, "RESERVED", "EXTENDED", "EXPIRED")
    assert statuses == ["RESERVED", "EXTENDED", "EXPIRED"]
    expired_at = datetime.fromisoformat(pipeline.events(order)[2]["at"]).timestamp()
    assert expired_at >= new_deadline
    assert await pipeline.levels(sku) == (10, 0, 10)
    assert metric("inventory_reservations_expired_total", via="timer") >= timer_before + 1
    assert metric("inventory_expiry_sweeper_catches_total") == catches_before
    await pipeline.unscheduled(order)
    await asyncio.sleep(0.5)  # a second EXPIRED would be published by now
    assert pipeline.statuses(order) == ["RESERVED", "EXTENDED", "EXPIRED"]
    print(f"EXPIRED {expired_at - new_deadline:.2f}s after the extended deadline")


async def test_a_commit_before_the_deadline_wins(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, sku, 2, ttl=2)
    await pipeline.outcome(order, "RESERVED")
    await pipeline.scheduled(order)
    await pipeline.paid(order)
    assert await pipeline.outcome(order, "RESERVED", "COMMITTED") == ["RESERVED", "COMMITTED"]
    await pipeline.unscheduled(order)  # the COMMITTED event deleted the entry
    await asyncio.sleep(max(deadline_of(pipeline, order) - time.time(), 0) + 0.5)
    # even an expiry attempted now finds nothing due: the commit won for good
    (again,) = await pipeline.container.engine.expire([order])
    assert again.duplicate and again.published is None
    assert pipeline.statuses(order) == ["RESERVED", "COMMITTED"]
    assert await pipeline.levels(sku) == (8, 0, 8)


async def test_a_payment_after_expiry_reserves_again_and_commits(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, sku, 2, ttl=1)
    assert await pipeline.outcome(order, "RESERVED", "EXPIRED") == ["RESERVED", "EXPIRED"]
    assert await pipeline.levels(sku) == (10, 0, 10)
    await pipeline.paid(order)
    statuses = await pipeline.outcome(order, "RESERVED", "EXPIRED", "COMMITTED")
    assert statuses == ["RESERVED", "EXPIRED", "COMMITTED"]
    assert await pipeline.levels(sku) == (8, 0, 8)


async def test_a_payment_after_expiry_fails_when_the_stock_is_gone(pipeline: Pipeline) -> None:
    sku, order, rival = unique("sku"), unique("order"), unique("rival")
    await pipeline.stock(sku, 2)
    await pipeline.created(order, sku, 2, ttl=1)
    assert await pipeline.outcome(order, "RESERVED", "EXPIRED") == ["RESERVED", "EXPIRED"]
    await pipeline.created(rival, sku, 2, ttl=900)  # takes the returned stock
    await pipeline.outcome(rival, "RESERVED")
    await pipeline.paid(order)
    statuses = await pipeline.outcome(order, "RESERVED", "EXPIRED", "COMMIT_FAILED")
    assert statuses == ["RESERVED", "EXPIRED", "COMMIT_FAILED"]
    assert await pipeline.levels(sku) == (0, 2, 2)
    await pipeline.cancelled(rival)  # leave nothing pending behind
    await pipeline.outcome(rival, "RESERVED", "RELEASED")


async def test_a_cancel_deletes_the_schedule_entry(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 5)
    await pipeline.created(order, sku, 1, ttl=900)
    await pipeline.outcome(order, "RESERVED")
    await pipeline.scheduled(order)
    expiry = pipeline.worker.expiry
    assert expiry is not None
    assert expiry.table[order] == pytest.approx(deadline_of(pipeline, order))
    await pipeline.cancelled(order)
    assert await pipeline.outcome(order, "RESERVED", "RELEASED") == ["RESERVED", "RELEASED"]
    await pipeline.unscheduled(order)


async def test_the_sweeper_catches_a_reservation_the_table_lost(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 4)
    await pipeline.created(order, sku, 4, ttl=1)
    await pipeline.outcome(order, "RESERVED")
    await pipeline.scheduled(order)
    expiry, sweeper = pipeline.worker.expiry, pipeline.worker.sweeper
    assert expiry is not None and sweeper is not None
    # lose the schedule entry, as if its event never reached the table
    expiry.schedule.discard(order)
    expiry.table.data.pop(order, None)
    await asyncio.sleep(max(deadline_of(pipeline, order) - time.time(), 0) + 0.5)
    assert await pipeline.state(order) == "RESERVED"  # the timer had nothing to act on

    catches_before = metric("inventory_expiry_sweeper_catches_total")
    report = await sweeper.sweep()
    assert report.expired == 1 and report.found == 1
    assert metric("inventory_expiry_sweeper_catches_total") == catches_before + 1
    assert await pipeline.outcome(order, "RESERVED", "EXPIRED") == ["RESERVED", "EXPIRED"]
    assert await pipeline.levels(sku) == (4, 0, 4)
    assert (await sweeper.sweep()).found == 0  # nothing left to catch
