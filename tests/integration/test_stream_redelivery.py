"""What a stopped worker leaves committed on the real broker of the test stack.

The rule the order agents rely on (``streams/agents.py``: ``disown``, ``settle``;
``streams/offsets.py``: only settled offsets are committed): an event whose batch was taken but
never settled keeps its offset uncommitted, so the next worker gets it again; a settled event's
offset is committed, so the next worker never sees it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from service.bootstrap import Container, build
from service.config import Settings
from service.domain.commands import Command, UpdateStock
from service.domain.errors import Unavailable
from service.domain.values import Sku, StockOperation
from streams.worker import StreamWorker
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

WHEN = "2024-05-01T12:00:00Z"
SKU = "redelivered-sku"
WITHIN_S = 30.0  # a bound for a broken test, not a figure under test


class WatchedEngine:
    """The real engine; records the event ids of every batch, and fails each batch that holds
    ``failing_on`` as if the database were down (the handler retries it until the worker
    stops, then gives it up unsettled)."""

    def __init__(self, engine: Any, failing_on: str | None = None) -> None:
        self._engine = engine
        self._failing_on = failing_on
        self.seen: list[str] = []
        self.failed = asyncio.Event()

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        event_ids = [str(getattr(command, "event_id", "")) for command in commands]
        self.seen.extend(event_ids)
        if self._failing_on in event_ids:
            self.failed.set()
            raise Unavailable("database down (the test's engine)")
        return list(await self._engine.execute_many(commands))

    def __getattr__(self, name: str) -> Any:  # the rest of the engine, as it is
        return getattr(self._engine, name)


@asynccontextmanager
async def one_partition(
    settings: Settings, **changes: Any
) -> AsyncIterator[tuple[Settings, Container]]:
    """Topics and a consumer group of their own, one partition, 10 units of ``SKU``."""
    own = settings.isolated(
        uuid.uuid4().hex[:8], topic_partitions=1, broker_commit_interval_s=0.2, **changes
    )
    async with build(own) as container:
        await container.engine.update_stock(
            UpdateStock(Sku(SKU), "default", StockOperation.SET, 10, "stream test")
        )
        yield own, container


@pytest.fixture
async def isolated(settings: Settings) -> AsyncIterator[tuple[Settings, Container]]:
    # the restarted worker gets the partition once the stopped one's session expired
    async with one_partition(settings, broker_session_timeout_s=3.0) as own:
        yield own


async def send_created(settings: Settings, order: str) -> int:
    """An order-created event for one unit of ``SKU``; its offset. Its event id is the order's."""
    body = {
        "event_id": order,
        "order_id": order,
        "items": [{"product_id": SKU, "quantity": 1}],
        "occurred_at": WHEN,
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            settings.topic_order_created, json.dumps(body).encode(), key=order.encode()
        )
    finally:
        await producer.stop()
    return int(meta.offset)


async def committed(settings: Settings) -> int:
    """The group's committed offset of the order-created partition (-1: none yet)."""
    tp = TopicPartition(settings.topic_order_created, 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        # always name the partitions: the embedded broker closes the connection otherwise
        offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return -1 if found is None else int(found.offset)


async def started(settings: Settings, container: Container, engine: WatchedEngine) -> StreamWorker:
    worker = StreamWorker(settings, dataclasses.replace(container, engine=engine))
    await worker.start()
    return worker


@pytest.mark.timeout(120)
async def test_a_taken_but_unsettled_event_is_redelivered_after_a_restart_and_a_settled_one_is_not(
    isolated: tuple[Settings, Container],
) -> None:
    settings, container = isolated
    settled_order, unsettled_order = "order-settled", "order-unsettled"

    first = WatchedEngine(container.engine, failing_on=unsettled_order)
    worker = await started(settings, container, first)
    try:
        settled_at = await send_created(settings, settled_order)
        await wait_for(
            lambda: committed_past(settings, settled_at),
            within_s=WITHIN_S,
            what="the settled event's offset committed",
        )
        unsettled_at = await send_created(settings, unsettled_order)
        await asyncio.wait_for(first.failed.wait(), WITHIN_S)  # its batch was taken
    finally:
        await worker.stop()
    assert await committed(settings) == unsettled_at  # the next read starts at it

    second = WatchedEngine(container.engine)
    worker = await started(settings, container, second)
    try:
        await wait_for(
            lambda: committed_past(settings, unsettled_at),
            within_s=WITHIN_S,
            what="the redelivered event processed and its offset committed",
        )
    finally:
        await worker.stop()
    assert set(second.seen) == {unsettled_order}
    states = await order_states(container)
    assert states == {settled_order: "RESERVED", unsettled_order: "RESERVED"}


async def committed_past(settings: Settings, offset: int) -> bool:
    return await committed(settings) > offset


async def order_states(container: Container) -> dict[str, str]:
    async with container.db.connect() as conn:
        rows = await conn.execute(text("SELECT order_id, state FROM orders"))
        return {str(order): str(state) for order, state in rows}
