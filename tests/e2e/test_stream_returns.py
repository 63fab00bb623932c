"""Returns end to end: order-returned in, the worker and the engine, RETURNED or
RETURN_REFUSED out on inventory-reservations, malformed returns to the DLQ.

The worker, topics and helpers are tests/e2e/test_stream_pipeline.py's (a worker of this
module's own)."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from service.invariants import check
from tests.e2e.test_stream_pipeline import WHEN, Pipeline, pipeline, unique

pytestmark = pytest.mark.stack

__all__ = ["pipeline"]  # the module's worker: the fixture, imported


def returned_event(
    order: str, items: list[tuple[str, int]] | None, restock: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"{order}-returned-{uuid.uuid4().hex[:6]}",
        "order_id": order,
        "restock": restock,
        "reason": "customer return",
        "occurred_at": WHEN,
    }
    if items is not None:
        body["items"] = [{"product_id": p, "quantity": q} for p, q in items]
    return body


async def paid(pipeline: Pipeline, sku: str, order: str, quantity: int) -> None:
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, quantity))
    await pipeline.outcome(order, "RESERVED")
    await pipeline.paid(order)
    await pipeline.outcome(order, "RESERVED", "COMMITTED")


async def test_a_paid_order_returned_puts_the_stock_back_once(pipeline: Pipeline) -> None:
    sku, order = unique("sku"), unique("order")
    await paid(pipeline, sku, order, 4)
    assert await pipeline.levels(sku) == (6, 0, 6)
    topic = pipeline.settings.topic_order_returned
    first = returned_event(order, [(sku, 3)], restock=True)
    await pipeline.send(topic, order, first)
    await pipeline.send(topic, order, first)  # redelivered: no second effect
    await pipeline.outcome(order, "RESERVED", "COMMITTED", "RETURNED")
    assert await pipeline.levels(sku) == (9, 0, 9)  # back where it left
    event = pipeline.out.by_key(pipeline.settings.topic_reservations, order)[2].value
    assert event["restock"] is True
    assert [(i["product_id"], i["quantity"]) for i in event["items"]] == [(sku, 3)]

    # the same units again, then more than committed: refused whole, nothing changes
    await pipeline.send(topic, order, returned_event(order, [(sku, 3)], restock=True))
    await pipeline.send(topic, order, returned_event(order, [(sku, 5)], restock=True))
    statuses = await pipeline.outcome(
        order, "RESERVED", "COMMITTED", "RETURNED", "RETURN_REFUSED", "RETURN_REFUSED"
    )
    assert statuses == ["RESERVED", "COMMITTED", "RETURNED", "RETURN_REFUSED", "RETURN_REFUSED"]
    refused = [
        r.value["reason"]
        for r in pipeline.out.by_key(pipeline.settings.topic_reservations, order)[3:]
    ]
    assert all("returnable 1" in reason for reason in refused), refused
    assert await pipeline.levels(sku) == (9, 0, 9)

    # no items: the rest, recorded damaged
    await pipeline.send(topic, order, returned_event(order, None, restock=False))
    await pipeline.outcome(order, *statuses, "RETURNED")
    assert await pipeline.levels(sku) == (9, 0, 9)
    assert await check(pipeline.container.db) == []


async def test_a_return_of_an_order_not_committed_is_refused(pipeline: Pipeline) -> None:
    sku, order, ghost = unique("sku"), unique("order"), unique("ghost")
    await pipeline.stock(sku, 10)
    await pipeline.created(order, (sku, 2))
    await pipeline.outcome(order, "RESERVED")
    topic = pipeline.settings.topic_order_returned
    await pipeline.send(topic, order, returned_event(order, [(sku, 1)], restock=True))
    await pipeline.send(topic, ghost, returned_event(ghost, [(sku, 1)], restock=True))
    await pipeline.outcome(order, "RESERVED", "RETURN_REFUSED")
    await pipeline.outcome(ghost, "RETURN_REFUSED")
    reasons = {
        key: pipeline.out.by_key(pipeline.settings.topic_reservations, key)[-1].value["reason"]
        for key in (order, ghost)
    }
    assert reasons == {order: "order is RESERVED", ghost: "unknown order"}
    assert await pipeline.levels(sku) == (8, 2, 10)


async def test_malformed_returns_go_to_the_dlq_and_the_partition_goes_on(
    pipeline: Pipeline,
) -> None:
    sku, order = unique("sku"), unique("order")
    await paid(pipeline, sku, order, 2)
    topic = pipeline.settings.topic_order_returned

    def event(**change: Any) -> bytes:
        body: dict[str, Any] = {
            "event_id": unique("bad"),
            "order_id": order,
            "items": [{"product_id": sku, "quantity": 1}],
            "restock": True,
            "occurred_at": WHEN,
        }
        body.update(change)
        return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()

    bad = {
        b"not json": "not valid JSON",
        event(restock=...): "restock: required",
        event(restock="yes"): "restock: required",
        event(items=[{"product_id": sku, "quantity": 0}]): "items[0].quantity",
        event(items=[{"product_id": sku, "quantity": 1, "warehouse_id": "w"}]): "warehouse_id",
        event(items="all"): "items: must be a list",
        event(occurred_at=...): "occurred_at",
    }
    for raw in bad:
        await pipeline.send(topic, order, raw)
    await pipeline.send(topic, order, returned_event(order, [(sku, 1)], restock=True))
    await pipeline.outcome(order, "RESERVED", "COMMITTED", "RETURNED")

    letters = await pipeline.out.wait_for(
        lambda: (
            len(dlq := pipeline.out.by_key(pipeline.settings.topic_dlq, order)) >= len(bad) and dlq
        ),
        what="dead letters",
    )
    by_value = {base64.b64decode(r.value["value_base64"]): r.value for r in letters}
    assert set(by_value) == set(bad)
    for raw, reason in bad.items():
        letter = by_value[raw]
        assert letter["source_topic"] == topic and letter["key"] == order
        assert reason in letter["reason"], (letter["reason"], reason)
    assert await pipeline.levels(sku) == (9, 0, 9)
