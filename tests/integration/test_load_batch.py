"""``ledger.load_batch``: a batch's reads and its event claim in one statement."""

import pytest
from sqlalchemy import text

from db import ledger
from db.session import driver_transaction

pytestmark = pytest.mark.stack


async def test_claims_each_event_once_and_reads_warehouses_as_committed(db_engine):
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO warehouses (id, name, priority, active) VALUES "
                "('w1', 'w1', 10, true), ('w2', 'w2', 20, true)"
            )
        )
    events = [("order-created", "e-1", "o-1"), ("admin:update-stock", "k-1", None)]
    async with driver_transaction(db_engine) as conn:
        first = await ledger.load_batch(conn, ["o-1"], events)
    assert first.claimed == {("order-created", "e-1"), ("admin:update-stock", "k-1")}
    assert first.orders == {}
    assert [(w.priority, w.active) for w in map(first.warehouses.get, ("w1", "w2")) if w] == [
        (10, True),
        (20, True),
    ]

    async with db_engine.begin() as conn:
        await conn.execute(text("UPDATE warehouses SET active = false WHERE id = 'w2'"))
    async with driver_transaction(db_engine) as conn:
        # a stock-only batch: no order, its admin key seen before, a new one
        again = await ledger.load_batch(
            conn, [], [("admin:update-stock", "k-1", None), ("admin:update-stock", "k-2", None)]
        )
    assert again.claimed == {("admin:update-stock", "k-2")}
    assert again.warehouses["w2"].active is False
    assert again.orders == {}
