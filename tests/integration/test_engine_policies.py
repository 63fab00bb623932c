"""Stock policies through the engine, on the real PostgreSQL (and broker) of the test stack:
safety stock and backorders under concurrency, fills oldest first, alerts once per crossing."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import text

from service.bootstrap import build
from service.config import Settings
from service.devtools.observe import TopicCollector
from service.domain import validation as v
from service.domain.commands import SetStockPolicy, Source
from service.domain.errors import InsufficientStock
from service.domain.values import Sku, StockPolicy
from service.invariants import check
from streams.app import ensure_topics
from streams.outbox import OutboxRelay

pytestmark = pytest.mark.stack

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"


async def put_stock(container: Any, product: str, quantity: int, warehouse: str = "default"):
    return await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=None,
            warehouse_id=warehouse,
            operation="SET",
            quantity=quantity,
            reason="test stock",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


async def add_stock(container: Any, product: str, quantity: int, warehouse: str = "default"):
    return await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=None,
            warehouse_id=warehouse,
            operation="ADD",
            quantity=quantity,
            reason="restock",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


async def set_policy(container: Any, product: str, warehouse: str = "default", **policy: Any):
    return await container.engine.set_policy(
        SetStockPolicy(Sku(product), warehouse, StockPolicy(**policy), reason="test policy")
    )


def reserve(container: Any, order: str, *items: tuple[str, int], source=Source.API):
    raw = [{"product_id": p, "quantity": q} for p, q in items]
    return v.reserve(order, raw, 600, container.limits, source=source, event_id=f"e-{order}")


async def outbox(db: Any, topic: str) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM outbox WHERE topic = :t ORDER BY id"), {"t": topic}
        )
        return [row.payload for row in rows]


async def test_concurrent_reservers_never_take_safety_stock_nor_pass_the_backorder_limit(
    container: Any,
) -> None:
    hot = {"pol-a": (20, 5, 10), "pol-b": (12, 4, 6), "pol-c": (6, 6, 3)}  # stock, safety, limit
    for product, (stock, safety, limit) in hot.items():
        await put_stock(container, product, stock)
        await set_policy(container, product, safety_stock=safety, backorder_limit=limit)
    rng = random.Random(11)

    async def attempt(i: int) -> Any:
        a, b = rng.sample(sorted(hot), 2)
        command = reserve(container, f"pol-{i}", (a, rng.randint(1, 3)), (b, 1))
        try:
            return await container.engine.reserve(command)
        except InsufficientStock:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(64)))
    assert any(results) and not all(results)
    async with container.db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT product_id, available, reserved, backordered FROM stocks"
                    " WHERE product_id LIKE 'pol-%'"
                )
            )
        ).all()
    for product, available, reserved, backordered in rows:
        stock, safety, limit = hot[product]
        assert available >= safety - limit  # the exact floor: safety stock never promised
        assert available >= -limit
        assert reserved == stock - available
        # promised beyond sellable: at least what is below zero, at most what is below safety
        assert max(0, -available) <= backordered <= max(0, safety - available)
    assert await check(container.db) == []


async def test_a_restock_fills_backorders_oldest_first_with_one_event_per_order(
    container: Any, settings: Settings
) -> None:
    await put_stock(container, "bo", 2)
    await set_policy(container, "bo", backorder_limit=10)
    first = await container.engine.reserve(reserve(container, "bo-1", ("bo", 5)))
    second = await container.engine.reserve(reserve(container, "bo-2", ("bo", 4)))
    assert [line.backordered for line in first.reservations] == [3]
    assert [line.backordered for line in second.reservations] == [4]
    level = await add_stock(container, "bo", 5)
    assert level.backordered == 2  # 3 of the first order's and 2 of the second's are covered
    filled = [
        p
        for p in await outbox(container.db, settings.topic_reservations)
        if p["status"] == "BACKORDER_FILLED"
    ]
    assert [p["order_id"] for p in filled] == ["bo-1"]
    await add_stock(container, "bo", 2)
    filled = [
        p
        for p in await outbox(container.db, settings.topic_reservations)
        if p["status"] == "BACKORDER_FILLED"
    ]
    assert [p["order_id"] for p in filled] == ["bo-1", "bo-2"]
    await add_stock(container, "bo", 5)  # nothing left to fill: no third event
    assert (
        len(
            [
                p
                for p in await outbox(container.db, settings.topic_reservations)
                if p["status"] == "BACKORDER_FILLED"
            ]
        )
        == 2
    )
    assert await check(container.db) == []


async def test_alerts_reach_the_broker_once_per_crossing_and_meet_their_schema(
    settings: Settings,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    mine = settings.isolated(suffix)
    await ensure_topics(mine)
    collector = TopicCollector(mine.kafka_bootstrap, [mine.topic_stock_alerts])
    await collector.start()
    relay = OutboxRelay(mine)
    await relay.start()
    try:
        async with build(mine) as container:
            await put_stock(container, "alerted", 5)
            await set_policy(container, "alerted", reorder_point=2)
            await container.engine.reserve(reserve(container, "al-1", ("alerted", 2)))
            await container.engine.reserve(reserve(container, "al-2", ("alerted", 1)))  # 2: low
            await container.engine.reserve(reserve(container, "al-3", ("alerted", 1)))  # 1: no edge
            await container.engine.reserve(reserve(container, "al-4", ("alerted", 1)))  # 0: out
            await add_stock(container, "alerted", 4)  # back in
            expected = [
                ("LOW_STOCK", "default"),
                ("OUT_OF_STOCK", "default"),
                ("OUT_OF_STOCK", None),
                ("BACK_IN_STOCK", "default"),
                ("BACK_IN_STOCK", None),
            ]
            # after the initial SET's own pair (BACK_IN_STOCK for the row and the SKU): waiting
            # for fewer could stop before the last crossing's alerts arrive
            await collector.wait_for(
                lambda: collector.count >= 2 + len(expected), what="the alerts on the broker"
            )
    finally:
        await relay.stop()
        await collector.stop()
    records = collector.records[mine.topic_stock_alerts]
    alerts = [(r.value["alert"], r.value["warehouse_id"]) for r in records]
    # the initial SET of 5 units was BACK_IN_STOCK from nothing: a row that did not exist
    assert alerts[-len(expected) :] == expected
    assert {r.key for r in records} == {b"alerted"} or {r.key for r in records} == {"alerted"}
    schema = json.loads((SCHEMAS / _schema_name("stock-alerts")).read_text())
    for record in records:
        jsonschema.validate(record.value, schema)


def _schema_name(topic: str) -> str:
    names = [p.name for p in SCHEMAS.glob(f"{topic}*.json")]
    assert names, f"no JSON Schema for {topic} in docs/events"
    return names[0]


async def test_an_alert_without_a_movement_behind_it_is_an_invariant_violation(
    container: Any,
) -> None:
    await put_stock(container, "explained", 1)  # BACK_IN_STOCK, with its SET movement
    assert await check(container.db) == []
    async with container.db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (topic, key, payload) VALUES ('stock-alerts', 'ghost', "
                "CAST(:p AS jsonb))"
            ),
            {
                "p": json.dumps(
                    {
                        "alert": "OUT_OF_STOCK",
                        "product_id": "ghost",
                        "variant_id": None,
                        "warehouse_id": None,
                        "sellable": 0,
                        "at": "2026-01-01T00:00:00+00:00",
                    }
                )
            },
        )
    problems = await check(container.db)
    assert len(problems) == 1 and "OUT_OF_STOCK for ghost" in problems[0]
