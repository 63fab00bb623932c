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


async def test_a_plan_cached_while_orders_was_empty_still_finds_them_by_key(db_engine):
    # PostgreSQL keeps a generic plan after five runs of a prepared statement; planned on an
    # empty table it was a scan of the whole table, kept as the table grew (db/session.py)
    ids = [f"o-{i}" for i in range(8)]
    for _ in range(8):
        async with driver_transaction(db_engine) as conn:
            await ledger.load_batch(conn, ids, [])
            await ledger.load_reservations(conn, ids)
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, version) "
                "SELECT 'o-' || g, 'RESERVED', '[]'::jsonb, 1 FROM generate_series(0, 4999) g"
            )
        )
    async with driver_transaction(db_engine) as conn:
        loaded = await ledger.load_batch(conn, ids, [])
        await ledger.load_reservations(conn, ids)
        scans = dict(
            await conn.fetch(
                "SELECT relname, seq_scan FROM pg_stat_xact_user_tables "
                "WHERE relname IN ('orders', 'order_tombstones', 'reservations')"
            )
        )
    assert sorted(loaded.orders) == sorted(ids)
    assert scans == {"orders": 0, "order_tombstones": 0, "reservations": 0}


async def test_a_batch_leaves_sequential_scans_on_for_the_pools_other_users(db_engine):
    async with driver_transaction(db_engine) as conn:
        assert await conn.fetchval("SHOW enable_seqscan") == "off"
    async with db_engine.connect() as conn:
        assert (await conn.execute(text("SHOW enable_seqscan"))).scalar() == "on"
