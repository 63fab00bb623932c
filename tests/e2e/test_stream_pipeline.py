"""Order events end to end: Kafka in, the worker and the engine, PostgreSQL, outbox, Kafka out.

One stream worker runs for the module (on topics of its own); each test uses its own order
ids and SKUs, and the database is emptied before each test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import text

from service.bootstrap import Container, build
from service.config import Settings
from service.devtools.observe import Record, TopicCollector
from service.domain.commands import SetStockPolicy, UpdateStock
from service.domain.values import Sku, StockOperation, StockPolicy
from service.invariants import check
from streams.worker import StreamWorker
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"
WHEN = "2024-05-01T12:00:00Z"


def stream_settings(overrides: dict[str, Any], **extra: Any) -> Settings:
    return Settings(**overrides).isolated(
        uuid.uuid4().hex[:8],
        **{"topic_partitions": 2, "broker_commit_interval_s": 0.5, **extra},
    )


def events_processed() -> float:
    """Order events the worker finished (any outcome), from the process's metrics."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "inventory_events"
        for sample in metric.samples
        if sample.name == "inventory_events_total"
    )


@dataclass
class Pipeline:
    settings: Settings
    container: Container
    worker: StreamWorker
    out: TopicCollector
    producer: AIOKafkaProducer
    sent: int = 0

    async def send(self, topic: str, key: str, value: dict[str, Any] | bytes) -> None:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        await self.producer.send_and_wait(topic, raw, key=key.encode())
        self.sent += 1

    async def created(
        self,
        order: str,
        *items: tuple[str, int],
        event: str | None = None,
        ttl: int | None = None,
        allow_partial: bool | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "event_id": event or f"{order}-created-{uuid.uuid4().hex[:6]}",
            "order_id": order,
            "items": [{"product_id": p, "quantity": q} for p, q in items],
            "occurred_at": WHEN,
        }
        if ttl is not None:
            body["ttl_seconds"] = ttl
        if allow_partial is not None:
            body["allow_partial"] = allow_partial
        await self.send(self.settings.topic_order_created, order, body)

    async def extended(self, order: str, ttl: int, event: str | None = None) -> None:
        body = {
            "event_id": event or f"{order}-extended-{uuid.uuid4().hex[:6]}",
            "order_id": order,
            "ttl_seconds": ttl,
            "occurred_at": WHEN,
        }
        await self.send(self.settings.topic_order_extended, order, body)

    async def paid(self, order: str, event: str | None = None) -> None:
        body = {
            "event_id": event or f"{order}-paid-{uuid.uuid4().hex[:6]}",
            "order_id": order,
            "occurred_at": WHEN,
        }
        await self.send(self.settings.topic_order_paid, order, body)

    async def cancelled(self, order: str, event: str | None = None) -> None:
        body = {
            "event_id": event or f"{order}-cancelled-{uuid.uuid4().hex[:6]}",
            "order_id": order,
            "reason": "changed my mind",
            "occurred_at": WHEN,
        }
        await self.send(self.settings.topic_order_cancelled, order, body)

    async def stock(self, product: str, quantity: int) -> None:
        await self.container.engine.update_stock(
            UpdateStock(Sku(product), "default", StockOperation.SET, quantity, "test stock")
        )

    def statuses(self, order: str) -> list[str]:
        return [r.value["status"] for r in self.out.by_key(self.settings.topic_reservations, order)]

    async def outcome(self, order: str, *statuses: str) -> list[str]:
        """Wait until the order's result events are at least ``statuses``; return them all."""
        await self.out.wait_for(
            lambda: len(self.statuses(order)) >= len(statuses), what=f"{order} {statuses}"
        )
        return self.statuses(order)

    async def settled(self, processed_before: float, events: int) -> None:
        """Wait until ``events`` more events were processed, published and read back."""
        await self.out.wait_for(
            lambda: events_processed() >= processed_before + events, what="events processed"
        )

        async def drained() -> bool:
            return not await self.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")

        await wait_for(drained, within_s=30, what="the outbox relay drained")
        await self.out.wait_caught_up()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.container.db.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def levels(self, product: str) -> tuple[int, int, int]:
        async with self.container.db.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT available, reserved, total FROM stocks WHERE product_id = :p"),
                    {"p": product},
                )
            ).one()
        return row.available, row.reserved, row.total


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pipeline(stack: Any, migrated: Any) -> AsyncIterator[Pipeline]:
    settings = stream_settings(stack.overrides)
    async with build(settings) as container:
        worker = StreamWorker(settings, container, summary_interval_s=5)
        await worker.start()
        out = TopicCollector(
            settings.kafka_bootstrap,
            [settings.topic_reservations, settings.topic_stock_changed, settings.topic_dlq],
        )
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        await out.start()
        try:
            yield Pipeline(settings, container, worker, out, producer)
        finally:
            await out.stop()
            await producer.stop()
            await worker.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_created_reserves_and_paid_commits(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 2))
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]
    reserved = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[0].value
    assert reserved["items"][0]["product_id"] == sku and reserved["items"][0]["quantity"] == 2
    assert "expires_at" in reserved
    rows = await pipeline.scalar(
        "SELECT count(*) FROM reservations WHERE order_id = :o AND status = 'PENDING'", o=order
    )
    assert rows == 1
    assert await pipeline.levels(sku) == (8, 2, 10)

    await pipeline.paid(order)
    assert await pipeline.outcome(order, "RESERVED", "COMMITTED") == ["RESERVED", "COMMITTED"]
    assert await pipeline.levels(sku) == (8, 0, 8)
    assert (
        await pipeline.scalar("SELECT status FROM reservations WHERE order_id = :o", o=order)
        == "COMMITTED"
    )


async def test_cancelled_releases_and_returns_the_stock(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 3))
    await pipeline.outcome(order, "RESERVED")
    assert await pipeline.levels(sku) == (7, 3, 10)
    await pipeline.cancelled(order)
    assert await pipeline.outcome(order, "RESERVED", "RELEASED") == ["RESERVED", "RELEASED"]
    assert await pipeline.levels(sku) == (10, 0, 10)


async def test_too_little_stock_is_rejected_with_the_shortage(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 1)
    await pipeline.created(order, (sku, 5))
    assert await pipeline.outcome(order, "REJECTED") == ["REJECTED"]
    event = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[0].value
    assert event["shortages"][0]["requested"] == 5
    assert event["shortages"][0]["available"] == 1
    assert await pipeline.levels(sku) == (1, 0, 1)


async def test_cancel_before_create_never_reserves(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    before = events_processed()
    await pipeline.cancelled(order)
    await pipeline.settled(before, 1)
    assert pipeline.statuses(order) == []  # remembered, not reported
    await pipeline.created(order, (sku, 2))
    assert await pipeline.outcome(order, "RELEASED") == ["RELEASED"]
    assert await pipeline.levels(sku) == (10, 0, 10)


async def test_paid_before_create_reserves_and_commits_at_once(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    before = events_processed()
    await pipeline.paid(order)
    await pipeline.settled(before, 1)
    assert pipeline.statuses(order) == []
    await pipeline.created(order, (sku, 4))
    assert await pipeline.outcome(order, "COMMITTED") == ["COMMITTED"]
    assert await pipeline.levels(sku) == (6, 0, 6)


async def test_paid_after_expiry_reserves_again_and_commits(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 2), ttl=1)
    await pipeline.outcome(order, "RESERVED")
    await asyncio.sleep(1.1)  # let the reservation fall due (the expiry agent is not here)
    await pipeline.container.engine.expire([order])
    await pipeline.outcome(order, "RESERVED", "EXPIRED")
    assert await pipeline.levels(sku) == (10, 0, 10)
    await pipeline.paid(order)
    statuses = await pipeline.outcome(order, "RESERVED", "EXPIRED", "COMMITTED")
    assert statuses == ["RESERVED", "EXPIRED", "COMMITTED"]
    assert await pipeline.levels(sku) == (8, 0, 8)


async def test_paid_after_rejection_fails_when_stock_is_still_short(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 1)
    await pipeline.created(order, (sku, 3))
    await pipeline.outcome(order, "REJECTED")
    await pipeline.paid(order)
    assert await pipeline.outcome(order, "REJECTED", "COMMIT_FAILED") == [
        "REJECTED",
        "COMMIT_FAILED",
    ]
    assert await pipeline.levels(sku) == (1, 0, 1)


async def test_cancel_after_commit_is_reported_without_stock_effect(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 1))
    await pipeline.outcome(order, "RESERVED")
    await pipeline.paid(order)
    await pipeline.outcome(order, "RESERVED", "COMMITTED")
    await pipeline.cancelled(order)
    statuses = await pipeline.outcome(order, "RESERVED", "COMMITTED", "CANCEL_AFTER_COMMIT")
    assert statuses == ["RESERVED", "COMMITTED", "CANCEL_AFTER_COMMIT"]
    assert await pipeline.levels(sku) == (9, 0, 9)


async def test_duplicates_have_no_second_effect(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    before = events_processed()
    await pipeline.created(order, (sku, 2), event=f"{order}-e1")
    await pipeline.created(order, (sku, 2), event=f"{order}-e1")  # redelivered
    await pipeline.created(order, (sku, 2), event=f"{order}-e2")  # the same order, again
    await pipeline.paid(order, event=f"{order}-p1")
    await pipeline.paid(order, event=f"{order}-p1")
    await pipeline.paid(order, event=f"{order}-p2")
    await pipeline.settled(before, 6)
    assert pipeline.statuses(order) == ["RESERVED", "COMMITTED"]
    assert await pipeline.levels(sku) == (8, 0, 8)
    assert (
        await pipeline.scalar("SELECT count(*) FROM stock_movements WHERE order_id = :o", o=order)
        == 2
    )  # one RESERVE, one COMMIT


async def test_malformed_events_go_to_the_dlq_and_the_partition_goes_on(
    pipeline: Pipeline,
) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    topic = pipeline.settings.topic_order_created

    def event(**change: Any) -> bytes:
        body: dict[str, Any] = {
            "event_id": unique("bad"),
            "order_id": order,
            "items": [{"product_id": sku, "quantity": 1}],
            "occurred_at": WHEN,
        }
        body.update(change)
        return json.dumps({k: v for k, v in body.items() if v is not None}).encode()

    bad = {
        b'{"event_id": "x", "order_id": ': "not valid JSON",
        event(items=None): "items: must be a list",
        event(order_id=None): "order_id: must be a string",
        event(
            items=[{"product_id": sku, "quantity": "2"}]
        ): "items[0].quantity: must be an integer",
        event(items=[{"product_id": sku, "quantity": 0}]): "items[0].quantity: must be between",
        event(items=[{"product_id": sku, "quantity": -4}]): "items[0].quantity: must be between",
        event(items=[{"product_id": sku, "quantity": 100_001}]): "items[0].quantity: must be",
    }
    for raw in bad:
        await pipeline.send(topic, order, raw)  # one key: one partition
    await pipeline.created(order, (sku, 1))
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]

    letters = await pipeline.out.wait_for(
        lambda: (
            len(dlq := pipeline.out.by_key(pipeline.settings.topic_dlq, order)) >= len(bad) and dlq
        ),
        what="dead letters",
    )
    assert len(letters) == len(bad)
    by_value = {base64.b64decode(r.value["value_base64"]): r.value for r in letters}
    assert set(by_value) == set(bad)
    partitions = {letter["partition"] for letter in by_value.values()}
    assert len(partitions) == 1
    for raw, reason in bad.items():
        letter = by_value[raw]
        assert letter["source_topic"] == topic
        assert reason in letter["reason"], (letter["reason"], reason)
        assert letter["key"] == order
    offsets = sorted(letter["offset"] for letter in by_value.values())
    assert offsets == list(range(offsets[0], offsets[0] + len(bad)))
    assert await pipeline.levels(sku) == (9, 1, 10)


async def test_database_down_holds_the_events_until_it_is_back(
    pipeline: Pipeline, stack: Any
) -> None:
    if stack.postgres is None:
        pytest.skip("PostgreSQL is external: the test cannot stop it")
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    stack.stop_postgres()
    try:
        await pipeline.created(order, (sku, 1))
        await asyncio.sleep(2)  # the worker retries the batch meanwhile, committing nothing
        assert pipeline.statuses(order) == []
    finally:
        stack.start_postgres()
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]
    assert await pipeline.levels(sku) == (9, 1, 10)


async def test_an_extension_moves_a_reserved_orders_deadline(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 2), ttl=60)
    await pipeline.outcome(order, "RESERVED")
    asked_at = datetime.now().astimezone()
    await pipeline.extended(order, 600)
    assert await pipeline.outcome(order, "RESERVED", "EXTENDED") == ["RESERVED", "EXTENDED"]
    reserved, extended = (
        r.value for r in pipeline.out.by_key(pipeline.settings.topic_reservations, order)
    )
    new_deadline = datetime.fromisoformat(extended["expires_at"])
    assert new_deadline > datetime.fromisoformat(reserved["expires_at"])
    # ttl_seconds from when the event was processed (whole seconds), not from the reservation
    assert 598 <= (new_deadline - asked_at).total_seconds() <= 630
    assert [(i["product_id"], i["quantity"]) for i in extended["items"]] == [(sku, 2)]
    stored = await pipeline.scalar("SELECT expires_at FROM orders WHERE order_id = :o", o=order)
    assert stored == new_deadline
    assert await pipeline.scalar("SELECT state FROM orders WHERE order_id = :o", o=order) == (
        "RESERVED"
    )
    assert await pipeline.levels(sku) == (8, 2, 10)  # the hold itself is unchanged


async def test_an_extension_of_an_unknown_order_is_refused_and_not_remembered(
    pipeline: Pipeline,
) -> None:
    order = unique("ghost")
    await pipeline.extended(order, 600)
    assert await pipeline.outcome(order, "NOT_EXTENDED") == ["NOT_EXTENDED"]
    refused = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[0].value
    assert refused["reason"] == "unknown order"
    assert refused["items"] == [] and "expires_at" not in refused
    assert await pipeline.scalar("SELECT count(*) FROM orders WHERE order_id = :o", o=order) == 0


async def test_an_extension_of_a_committed_order_says_why_not(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 1))
    await pipeline.outcome(order, "RESERVED")
    await pipeline.paid(order)
    await pipeline.outcome(order, "RESERVED", "COMMITTED")
    await pipeline.extended(order, 600)
    statuses = await pipeline.outcome(order, "RESERVED", "COMMITTED", "NOT_EXTENDED")
    assert statuses == ["RESERVED", "COMMITTED", "NOT_EXTENDED"]
    refused = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[2].value
    assert refused["reason"] == "order is COMMITTED"
    assert await pipeline.levels(sku) == (9, 0, 9)


async def test_malformed_extensions_go_to_the_dlq_and_the_partition_goes_on(
    pipeline: Pipeline,
) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 1), ttl=60)
    await pipeline.outcome(order, "RESERVED")
    topic = pipeline.settings.topic_order_extended

    def event(**change: Any) -> bytes:
        body: dict[str, Any] = {
            "event_id": unique("bad"),
            "order_id": order,
            "ttl_seconds": 600,
            "occurred_at": WHEN,
        }
        body.update(change)
        return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()

    bad = {
        b'{"event_id": "x", "order_id": ': "not valid JSON",
        event(ttl_seconds=...): "ttl_seconds: required",
        event(ttl_seconds=0): "ttl_seconds: must be between 1 and 86400, got 0",
        event(ttl_seconds=86_401): "ttl_seconds: must be between",
        event(ttl_seconds="600"): "ttl_seconds: must be an integer",
        event(order_id=...): "order_id: must be a string",
    }
    for raw in bad:
        await pipeline.send(topic, order, raw)  # one key: one partition
    await pipeline.extended(order, 300)
    assert await pipeline.outcome(order, "RESERVED", "EXTENDED") == ["RESERVED", "EXTENDED"]

    letters = await pipeline.out.wait_for(
        lambda: (
            len(dlq := pipeline.out.by_key(pipeline.settings.topic_dlq, order)) >= len(bad) and dlq
        ),
        what="dead letters",
    )
    assert len(letters) == len(bad)
    by_value = {base64.b64decode(r.value["value_base64"]): r.value for r in letters}
    assert set(by_value) == set(bad)
    for raw, reason in bad.items():
        letter = by_value[raw]
        assert letter["source_topic"] == topic and letter["key"] == order
        assert reason in letter["reason"], (letter["reason"], reason)
    offsets = sorted(letter["offset"] for letter in by_value.values())
    assert offsets == list(range(offsets[0], offsets[0] + len(bad)))
    assert await pipeline.levels(sku) == (9, 1, 10)


async def test_a_partial_order_reserves_what_there_is(pipeline: Pipeline) -> None:
    sku, other, order = unique("sku"), unique("sku"), unique("order")
    await pipeline.stock(sku, 2)
    await pipeline.stock(other, 5)
    await pipeline.created(order, (sku, 5), (other, 1), allow_partial=True)
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]
    reserved = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[0].value
    assert [
        (line["product_id"], line["requested"], line["reserved"], line["short"])
        for line in reserved["lines"]
    ] == [
        (sku, 5, 2, 3),
        (other, 1, 1, 0),
    ]
    assert await pipeline.levels(sku) == (0, 2, 2)
    assert await pipeline.levels(other) == (4, 1, 5)


def schema_validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


async def test_every_produced_event_matches_its_schema_and_order(pipeline: Pipeline) -> None:
    """Runs last: checks everything the module's tests made the service publish."""
    await pipeline.settled(events_processed(), 0)
    settings = pipeline.settings
    produced = {
        settings.topic_reservations: "inventory-reservations",
        settings.topic_stock_changed: "stock-changed",
        settings.topic_dlq: "order-events-dlq",
    }
    for topic, name in produced.items():
        validator = schema_validator(name)
        records = pipeline.out.records.get(topic, [])
        assert records, f"nothing on {topic}"
        for record in records:
            validator.validate(record.value)
    assert_versions_in_order(pipeline.out.records[settings.topic_stock_changed])
    for record in pipeline.out.records[settings.topic_stock_changed]:
        assert record.key == Sku(record.value["product_id"], record.value["variant_id"]).key
    for record in pipeline.out.records[settings.topic_reservations]:
        assert record.key == record.value["order_id"]
    assert await check(pipeline.container.db) == []


def assert_versions_in_order(records: list[Record]) -> None:
    """Per stock row, the first copy of each version comes in increasing version order."""
    seen: dict[tuple[str, str | None, str], list[int]] = {}
    for record in records:
        value = record.value
        row = (value["product_id"], value["variant_id"], value["warehouse_id"])
        versions = seen.setdefault(row, [])
        if value["version"] not in versions:
            assert not versions or value["version"] > versions[-1], (row, versions, value)
            versions.append(value["version"])


async def test_a_backordered_order_is_reserved_then_filled_by_a_restock(
    pipeline: Pipeline,
) -> None:
    sku, order = unique("sku"), unique("order")
    await pipeline.stock(sku, 1)
    await pipeline.container.engine.set_policy(
        SetStockPolicy(Sku(sku), "default", StockPolicy(backorder_limit=5), "allow backorders")
    )
    await pipeline.created(order, (sku, 4))
    assert await pipeline.outcome(order, "RESERVED") == ["RESERVED"]
    reserved = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[0].value
    assert [item["backordered"] for item in reserved["items"]] == [3]
    assert await pipeline.levels(sku) == (-3, 4, 1)

    await pipeline.container.engine.update_stock(
        UpdateStock(Sku(sku), "default", StockOperation.ADD, 3, "restock")
    )
    assert await pipeline.outcome(order, "RESERVED", "BACKORDER_FILLED") == [
        "RESERVED",
        "BACKORDER_FILLED",
    ]
    filled = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[1].value
    schema = json.loads((SCHEMAS / "inventory-reservations.schema.json").read_text())
    jsonschema.validate(filled, schema)
    assert [item.get("backordered", 0) for item in filled["items"]] == [0]
    assert await check(pipeline.container.db) == []
