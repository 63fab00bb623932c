"""The bugs the fault, load and fuzz suites found, each pinned down on its own, small and fast."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from service.bootstrap import Container, limits_from
from service.config import Settings
from service.domain.commands import (
    Commit,
    OrderEventKind,
    Release,
    Reserve,
    Source,
    UpdateStock,
)
from service.domain.errors import InventoryError
from service.domain.values import Item, Sku, StockOperation
from service.invariants import check
from streams.records import InvalidEvent, decode_order_event


@pytest.mark.stack
@pytest.mark.parametrize(
    ("settle", "status", "state"),
    [
        (Commit("o-1", source=Source.STREAM, event_id="paid-1"), "COMMITTED", "COMMITTED"),
        (Release("o-1", source=Source.STREAM, event_id="cancel-1"), "RELEASED", "RELEASED"),
    ],
)
async def test_reserve_and_settle_in_one_batch(
    container: Container, settle: Commit | Release, status: str, state: str
) -> None:
    """Found by the kill -9 scenario: an order's created and paid (or cancelled) events in one
    batch left its reservation PENDING while the stock and the order moved on."""
    await container.engine.update_stock(
        UpdateStock(Sku("p-1"), "default", StockOperation.SET, 10, "seed")
    )
    reserve = Reserve(
        "o-1", (Item(Sku("p-1"), 3),), 900, source=Source.STREAM, event_id="created-1"
    )
    results = await container.engine.execute_many([reserve, settle])  # one batch
    assert not any(isinstance(r, InventoryError) for r in results), results
    async with container.db.connect() as conn:
        rows = (await conn.execute(text("SELECT status FROM reservations"))).scalars().all()
        order = (await conn.execute(text("SELECT state FROM orders"))).scalar_one()
    assert (list(rows), order) == ([status], state)
    assert await check(container.db) == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "e", "order_id": "o", "items": [{"product_id": "p", "quantity": '
        + b"9" * 5_000
        + b'}], "occurred_at": "2024-05-01T12:00:00Z"}',
        b'{"event_id": ' + b"1" * 4_301 + b"}",
    ],
)
def test_a_number_too_long_for_python_is_an_invalid_event(raw: bytes) -> None:
    """Found by fuzzing: json.loads raises a plain ValueError (not JSONDecodeError) for an
    integer of more than 4,300 digits; it escaped the decoder and halted the order agents."""
    limits = limits_from(Settings())
    with pytest.raises(InvalidEvent) as refused:
        decode_order_event(OrderEventKind.CREATED, raw, limits)
    assert refused.value.error == "json"
    json.dumps(refused.value.reason)  # a reason that fits in a dead letter
