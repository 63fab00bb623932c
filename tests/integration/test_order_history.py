"""The order lifecycle in the database: revision 0003 (``orders.allow_partial``, the
append-only ``order_history``), the ledger's reads and writes of them, and GetOrder's read
(``db/order_reads.py``), on the real PostgreSQL of the test stack."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import ledger, plan_sql
from db.order_reads import load_order_view
from db.session import driver_transaction
from service.domain import validation as v
from service.domain.commands import Commit, Source
from service.domain.plan import Plan, TransitionRow
from service.domain.results import ReservationLine, Transition
from service.domain.snapshot import OrderRow
from service.domain.values import (
    Item,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Sku,
)
from service.invariants import check
from tests.scratch_database import migrate, rows, schema_diff

pytestmark = pytest.mark.stack

STOCK = "00000000-0000-4000-8000-000000000001"
LINE = "00000000-0000-4000-8000-0000000000a1"
ITEMS = '[{"product_id": "p", "variant_id": "v", "quantity": 2, "warehouse_id": null}]'


# --- the revision, on a scratch database -----------------------------------------------------


async def tables(engine: AsyncEngine) -> set[str]:
    found = await rows(
        engine, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    return {row["tablename"] for row in found}


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    found = await rows(
        engine,
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = current_schema() AND table_name = '{table}'",
    )
    return {row["column_name"] for row in found}


async def seed_0002(engine: AsyncEngine) -> None:
    """Rows as the service wrote them before 0003: two orders, one holding a line."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, "
                f"reserved, total, version) VALUES ('{STOCK}', 'p', 'v', 'default', 5, 2, 7, 3)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
                f"last_event_id) VALUES ('o-1', 'RESERVED', '{ITEMS}', 600, "
                "'2026-12-01T10:00:00+00', 2, 'ev-1'), "
                "('o-2', 'REJECTED', '[]', NULL, NULL, 1, NULL)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, "
                "warehouse_id, quantity, status, expires_at) VALUES "
                f"('{LINE}', 'o-1', '{STOCK}', 'p', 'v', 'default', 2, 'PENDING', now())"
            )
        )


ORDERS = (
    "SELECT order_id, state, items, ttl_seconds, expires_at, version, last_event_id, "
    "created_at, updated_at FROM orders ORDER BY order_id"
)
LINES = "SELECT id::text, order_id, quantity, status, backordered FROM reservations ORDER BY id"


async def test_upgrade_from_0002_keeps_every_order_and_reads_all_or_nothing(scratch):
    url, engine = scratch
    await migrate(url, "0002")
    await seed_0002(engine)
    orders, lines = await rows(engine, ORDERS), await rows(engine, LINES)

    await migrate(url, "0003")

    assert await rows(engine, ORDERS) == orders
    assert await rows(engine, LINES) == lines
    assert await rows(engine, "SELECT order_id, allow_partial FROM orders ORDER BY 1") == [
        {"order_id": "o-1", "allow_partial": False},
        {"order_id": "o-2", "allow_partial": False},
    ]
    assert await rows(engine, "SELECT count(*) AS n FROM order_history") == [{"n": 0}]
    assert await columns(engine, "order_history") == {
        "id",
        "order_id",
        "from_state",
        "to_state",
        "published",
        "cause",
        "at",
    }
    [index] = await rows(
        engine,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_order_history_order_id_id'",
    )
    assert "(order_id, id)" in index["indexdef"]
    assert await rows(
        engine,
        "SELECT is_identity, identity_generation FROM information_schema.columns "
        "WHERE table_name = 'order_history' AND column_name = 'id'",
    ) == [{"is_identity": "YES", "identity_generation": "BY DEFAULT"}]
    # an order written without the column (as before 0003) is all or nothing; a history row
    # gets its id and its time from the database
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, version) "
                "VALUES ('o-3', 'RESERVED', '[]', 1)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO order_history (order_id, to_state, cause) "
                "VALUES ('o-3', 'RESERVED', 'ev-3')"
            )
        )
        now = (await conn.execute(text("SELECT now()"))).scalar_one()
    assert await rows(engine, "SELECT allow_partial FROM orders WHERE order_id = 'o-3'") == [
        {"allow_partial": False}
    ]
    assert await rows(engine, "SELECT id, from_state, published, at FROM order_history") == [
        {"id": 1, "from_state": None, "published": None, "at": now}
    ]


async def test_downgrade_to_0002_drops_the_history_and_keeps_the_orders(scratch):
    url, engine = scratch
    await migrate(url, "0002")
    await seed_0002(engine)
    orders, lines = await rows(engine, ORDERS), await rows(engine, LINES)
    await migrate(url, "0003")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE orders SET allow_partial = true WHERE order_id = 'o-1'"))
        await conn.execute(
            text(
                "INSERT INTO order_history (order_id, from_state, to_state, published, cause) "
                "VALUES ('o-1', NULL, 'RESERVED', 'RESERVED', 'ev-1')"
            )
        )
    orders = [o | {"updated_at": None} for o in orders]

    await migrate(url, "0002", down=True)

    assert [o | {"updated_at": None} for o in await rows(engine, ORDERS)] == orders
    assert await rows(engine, LINES) == lines
    assert "allow_partial" not in await columns(engine, "orders")
    assert "order_history" not in await tables(engine)
    assert (
        await rows(
            engine, "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_order_history%'"
        )
        == []
    )
    assert await rows(engine, "SELECT version_num FROM alembic_version") == [
        {"version_num": "0002"}
    ]
    # and up again: the revision runs on a database it was downgraded from
    await migrate(url, "0003")
    assert await rows(engine, "SELECT count(*) AS n FROM order_history") == [{"n": 0}]
    assert [o | {"updated_at": None} for o in await rows(engine, ORDERS)] == orders


async def test_the_models_mirror_revision_0003(scratch):
    url, engine = scratch
    await migrate(url, "0002")
    async with engine.connect() as conn:
        before = await conn.run_sync(schema_diff)
    # the comparison sees what 0003 adds (so an empty diff below means something)
    assert ("add_column", "orders", "allow_partial") in {
        (d[0], d[2], d[3].name) for d in before if d[0] == "add_column"
    }
    assert "order_history" in {d[1].name for d in before if d[0] == "add_table"}
    # at head: later revisions (0004's indexes) are in the models too
    await migrate(url, "head")
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []


# --- the ledger's reads and writes --------------------------------------------------------------


def order_row(order_id: str, state: OrderState, *, allow_partial: bool, version: int) -> OrderRow:
    return OrderRow(
        order_id=order_id,
        state=state,
        items=(Item(Sku("p", "v"), 2),),
        ttl_seconds=600,
        expires_at=datetime(2026, 12, 1, 10, tzinfo=UTC),
        version=version,
        last_event_id=f"ev-{order_id}-{version}",
        allow_partial=allow_partial,
    )


HISTORY = "SELECT id, order_id, from_state, to_state, published, cause, at FROM order_history"


async def test_write_plan_writes_allow_partial_and_the_transitions_at_the_transactions_time(
    db_engine,
):
    plan = Plan(
        orders={
            "o-1": order_row("o-1", OrderState.COMMITTED, allow_partial=True, version=2),
            "o-2": order_row("o-2", OrderState.REJECTED, allow_partial=False, version=1),
        },
        # o-1 created and paid in one batch: two steps of one order, in this order
        transitions=[
            TransitionRow("o-1", None, OrderState.RESERVED, ResultStatus.RESERVED, "ev-c1"),
            TransitionRow("o-2", None, OrderState.REJECTED, ResultStatus.REJECTED, "rpc:Reserve"),
            TransitionRow(
                "o-1", OrderState.RESERVED, OrderState.COMMITTED, ResultStatus.COMMITTED, "ev-p1"
            ),
        ],
    )
    async with driver_transaction(db_engine) as conn:
        first = await conn.fetchval("SELECT now()")
        await asyncio.sleep(0.01)  # the statement's clock moved on; the transaction's did not
        await plan_sql.write_plan(conn, plan, [])

    assert await rows(db_engine, f"{HISTORY} ORDER BY id") == [
        {
            "id": 1,
            "order_id": "o-1",
            "from_state": None,
            "to_state": "RESERVED",
            "published": "RESERVED",
            "cause": "ev-c1",
            "at": first,
        },
        {
            "id": 2,
            "order_id": "o-2",
            "from_state": None,
            "to_state": "REJECTED",
            "published": "REJECTED",
            "cause": "rpc:Reserve",
            "at": first,
        },
        {
            "id": 3,
            "order_id": "o-1",
            "from_state": "RESERVED",
            "to_state": "COMMITTED",
            "published": "COMMITTED",
            "cause": "ev-p1",
            "at": first,
        },
    ]
    async with driver_transaction(db_engine) as conn:
        loaded = (await ledger.load_batch(conn, ["o-1", "o-2"], [])).orders
    assert loaded == plan.orders

    # the upsert changes allow_partial too, and history only grows (a step without a
    # published event, as an extension that changed nothing might be)
    again = Plan(
        orders={"o-2": order_row("o-2", OrderState.REJECTED, allow_partial=True, version=2)},
        transitions=[TransitionRow("o-2", OrderState.REJECTED, OrderState.REJECTED, None, "x")],
    )
    async with driver_transaction(db_engine) as conn:
        second = await conn.fetchval("SELECT now()")
        await plan_sql.write_plan(conn, again, [])
    async with driver_transaction(db_engine) as conn:
        assert (await ledger.load_batch(conn, ["o-2"], [])).orders["o-2"].allow_partial
    assert await rows(db_engine, f"{HISTORY} WHERE order_id = 'o-2' ORDER BY id") == [
        {
            "id": 2,
            "order_id": "o-2",
            "from_state": None,
            "to_state": "REJECTED",
            "published": "REJECTED",
            "cause": "rpc:Reserve",
            "at": first,
        },
        {
            "id": 4,
            "order_id": "o-2",
            "from_state": "REJECTED",
            "to_state": "REJECTED",
            "published": None,
            "cause": "x",
            "at": second,
        },
    ]
    # a plan without transitions writes none
    async with driver_transaction(db_engine) as conn:
        await plan_sql.write_plan(conn, Plan(), [])
    assert await rows(db_engine, "SELECT count(*) AS n FROM order_history") == [{"n": 4}]


# --- GetOrder's read ----------------------------------------------------------------------------


def _line_id(n: int) -> str:
    return f"00000000-0000-4000-8000-0000000000b{n}"


async def _order_with_lines_and_history(db_engine: AsyncEngine) -> datetime:
    """o-1: partial, RESERVED then COMMITTED, holding lines of every status (created in an
    order their ids do not follow), with a soft-deleted line; o-2: another order's line and
    history. Returns when o-1 was reserved."""
    reserved_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, "
                f"reserved, total, version) VALUES ('{STOCK}', 'p', 'v', 'default', 5, 0, 5, 3)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
                f"allow_partial) VALUES ('o-1', 'COMMITTED', '{ITEMS}', 600, "
                "'2026-12-01T09:10:00+00', 2, true), ('o-2', 'RESERVED', '[]', 600, NULL, 1, "
                "false)"
            )
        )
        lines = [
            # (n, order, quantity, status, backordered, created seconds after reserved_at)
            (3, "o-1", 2, "COMMITTED", 1, 0),
            (1, "o-1", 1, "RELEASED", 0, 5),
            (2, "o-1", 4, "EXPIRED", 0, 5),  # same time as b1: by id
            (4, "o-2", 1, "PENDING", 0, 1),
        ]
        for n, order, quantity, status, backordered, seconds in lines:
            await conn.execute(
                text(
                    "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, "
                    "warehouse_id, quantity, status, expires_at, backordered, created_at) "
                    "VALUES (:id, :o, :s, 'p', 'v', 'default', :q, :st, now(), :b, :at)"
                ),
                {
                    "id": _line_id(n),
                    "o": order,
                    "s": STOCK,
                    "q": quantity,
                    "st": status,
                    "b": backordered,
                    "at": reserved_at + timedelta(seconds=seconds),
                },
            )
        await conn.execute(
            text(
                "INSERT INTO reservations (id, order_id, stock_id, product_id, warehouse_id, "
                "quantity, status, expires_at, deleted_at) VALUES "
                f"('{_line_id(5)}', 'o-1', '{STOCK}', 'p', 'default', 1, 'RELEASED', now(), now())"
            )
        )
        history = [
            ("o-1", None, "RESERVED", "RESERVED", "ev-c1", 0),
            ("o-2", None, "RESERVED", "RESERVED", "rpc:ReserveStock", 1),
            ("o-1", "RESERVED", "COMMITTED", "COMMITTED", "ev-p1", 60),
        ]
        for order, from_state, to_state, published, cause, seconds in history:
            await conn.execute(
                text(
                    "INSERT INTO order_history (order_id, from_state, to_state, published, "
                    "cause, at) VALUES (:o, :f, :t, :p, :c, :at)"
                ),
                {
                    "o": order,
                    "f": from_state,
                    "t": to_state,
                    "p": published,
                    "c": cause,
                    "at": reserved_at + timedelta(seconds=seconds),
                },
            )
    return reserved_at


async def test_load_order_view_has_the_lines_oldest_first_and_the_history_in_order(db_engine):
    at = await _order_with_lines_and_history(db_engine)
    # as on a replica: a read-only transaction refuses any write and any row lock
    async with db_engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION READ ONLY"))
        view = await load_order_view(conn, "o-1")
        unknown = await load_order_view(conn, "nobody")
        await conn.rollback()

    assert unknown is None
    assert view is not None
    assert (view.order_id, view.state, view.allow_partial) == ("o-1", OrderState.COMMITTED, True)
    assert view.items == (Item(Sku("p", "v"), 2),)
    assert view.expires_at == datetime(2026, 12, 1, 9, 10, tzinfo=UTC)
    sku = Sku("p", "v")
    assert view.reservations == (
        ReservationLine(_line_id(3), sku, "default", 2, ReservationStatus.COMMITTED, 1),
        ReservationLine(_line_id(1), sku, "default", 1, ReservationStatus.RELEASED, 0),
        ReservationLine(_line_id(2), sku, "default", 4, ReservationStatus.EXPIRED, 0),
    )
    assert view.history == (
        Transition(at, None, OrderState.RESERVED, ResultStatus.RESERVED, "ev-c1"),
        Transition(
            at + timedelta(seconds=60),
            OrderState.RESERVED,
            OrderState.COMMITTED,
            ResultStatus.COMMITTED,
            "ev-p1",
        ),
    )
    assert all(t.at.tzinfo is not None and t.at.utcoffset() == timedelta(0) for t in view.history)


async def test_load_order_view_of_an_order_without_lines_or_history(db_engine):
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, version) "
                "VALUES ('early', 'PAID_EARLY', '[]', 1)"
            )
        )
    async with db_engine.connect() as conn:
        view = await load_order_view(conn, "early")
    assert view is not None
    assert (view.state, view.items, view.reservations, view.history) == (
        OrderState.PAID_EARLY,
        (),
        (),
        (),
    )
    assert (view.expires_at, view.allow_partial) == (None, False)


async def test_load_order_view_keeps_microseconds_in_any_session_time_zone(db_engine):
    at = datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, version) "
                "VALUES ('tz', 'RESERVED', '[]', 1)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO order_history (order_id, to_state, published, cause, at) "
                "VALUES ('tz', 'RESERVED', 'RESERVED', 'e', :at)"
            ),
            {"at": at},
        )
    async with db_engine.connect() as conn:
        await conn.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
        view = await load_order_view(conn, "tz")
        await conn.rollback()
    assert view is not None
    assert [t.at for t in view.history] == [at]
    assert view.history[0].at.tzinfo == UTC


# --- through the engine (needs the planner's transitions) -----------------------------------------


async def put_stock(container: Any, product: str, quantity: int) -> None:
    await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=None,
            warehouse_id="default",
            operation="SET",
            quantity=quantity,
            reason="test stock",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


def reserve(container: Any, order: str, quantity: int, **kwargs: Any) -> Any:
    raw = [{"product_id": "p", "quantity": quantity}]
    return v.reserve(order, raw, None, container.limits, **kwargs)


async def history_of(container: Any, order_id: str) -> tuple[Transition, ...]:
    async with container.db.connect() as conn:
        view = await load_order_view(conn, order_id)
    assert view is not None
    return view.history


async def test_reserve_and_commit_through_the_engine_write_the_orders_history(container):
    await put_stock(container, "p", 10)
    # by event: the cause is the event id; created and paid in one batch, then a redelivery
    created = reserve(container, "by-event", 2, source=Source.STREAM, event_id="ev-created")
    paid = Commit("by-event", Source.STREAM, "ev-paid")
    await container.engine.execute_many([created, paid])
    await container.engine.execute_many([created])  # a duplicate: no effect, no step

    steps = await history_of(container, "by-event")
    assert [(t.from_state, t.to_state, t.published, t.cause) for t in steps] == [
        (None, OrderState.RESERVED, ResultStatus.RESERVED, "ev-created"),
        (OrderState.RESERVED, OrderState.COMMITTED, ResultStatus.COMMITTED, "ev-paid"),
    ]
    assert steps[0].at == steps[1].at  # one batch, one transaction

    # by RPC, in two batches: the cause names the method
    await container.engine.reserve(reserve(container, "by-rpc", 3))
    await container.engine.commit(v.commit("by-rpc", container.limits))
    steps = await history_of(container, "by-rpc")
    assert [(t.from_state, t.to_state, t.published, t.cause) for t in steps] == [
        (None, OrderState.RESERVED, ResultStatus.RESERVED, "rpc:ReserveStock"),
        (
            OrderState.RESERVED,
            OrderState.COMMITTED,
            ResultStatus.COMMITTED,
            "rpc:CommitReservation",
        ),
    ]
    assert steps[0].at < steps[1].at
    assert await check(container.db) == []
