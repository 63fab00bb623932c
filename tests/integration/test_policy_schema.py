"""Stock policies in the database: revision 0002, its CHECKs, the ledger's reads and writes of
the new columns, and the invariants over them (real PostgreSQL of the test stack)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import backorder_sql, ledger, plan_sql
from db.session import driver_transaction
from db.stock_reads import levels_of
from service.domain.plan import Plan, StockChange
from service.domain.snapshot import ReservationRow
from service.domain.values import DEFAULT_POLICY, Levels, ReservationStatus, Sku, StockPolicy
from service.invariants import check, find_all, find_changed
from tests.scratch_database import migrate, rows, schema_diff

pytestmark = pytest.mark.stack

STOCK = "00000000-0000-4000-8000-000000000001"
OTHER_STOCK = "00000000-0000-4000-8000-000000000002"
LINE = "00000000-0000-4000-8000-0000000000a1"
SKU = Sku("p", "v")


# --- the revision, on a scratch database -----------------------------------------------------


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    found = await rows(
        engine,
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = current_schema() AND table_name = '{table}'",
    )
    return {row["column_name"] for row in found}


async def checks(engine: AsyncEngine) -> set[str]:
    found = await rows(engine, "SELECT conname FROM pg_constraint WHERE contype = 'c'")
    return {row["conname"] for row in found}


async def seed_0001(engine: AsyncEngine) -> None:
    """Rows as the service wrote them before policies: a stock with a pending reservation."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, "
                "reserved, total, version) VALUES "
                f"('{STOCK}', 'p', 'v', 'default', 5, 2, 7, 3), "
                f"('{OTHER_STOCK}', 'q', NULL, 'default', 0, 0, 0, 1)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO orders (order_id, state, items, version) "
                "VALUES ('o-1', 'RESERVED', '[]', 1)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, "
                "warehouse_id, quantity, status, expires_at) VALUES "
                f"('{LINE}', 'o-1', '{STOCK}', 'p', 'v', 'default', 2, 'PENDING', now())"
            )
        )


LEVELS = "SELECT id::text, available, reserved, total, version FROM stocks ORDER BY id"


async def test_upgrade_from_0001_keeps_every_row_and_reads_the_defaults(scratch):
    url, engine = scratch
    await migrate(url, "0001")
    await seed_0001(engine)
    before = await rows(engine, LEVELS)

    await migrate(url, "head")

    assert await rows(engine, LEVELS) == before
    assert (
        await rows(
            engine,
            "SELECT safety_stock, reorder_point, backorder_limit, backordered FROM stocks",
        )
        == [{"safety_stock": 0, "reorder_point": None, "backorder_limit": 0, "backordered": 0}] * 2
    )
    assert await rows(engine, "SELECT id::text, quantity, backordered FROM reservations") == [
        {"id": LINE, "quantity": 2, "backordered": 0}
    ]
    assert {
        "ck_stocks_available_within_backorder_limit",
        "ck_stocks_safety_stock_not_negative",
        "ck_stocks_reorder_point_not_negative",
        "ck_stocks_backorder_limit_not_negative",
        "ck_stocks_backordered_not_negative",
        "ck_reservations_backordered_within_quantity",
    } <= await checks(engine)
    assert "ck_stocks_available_not_negative" not in await checks(engine)
    index = await rows(
        engine,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_reservations_backordered'",
    )
    assert len(index) == 1
    assert "(stock_id, created_at, id) WHERE (backordered > 0)" in index[0]["indexdef"]
    # a new row, as ensure_stocks inserts it (no policy column named), gets the defaults
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, warehouse_id, available, reserved, total, "
                "version) VALUES (gen_random_uuid(), 'new', 'default', 0, 0, 0, 0)"
            )
        )
    assert await rows(
        engine,
        "SELECT safety_stock, backorder_limit, backordered FROM stocks WHERE product_id='new'",
    ) == [{"safety_stock": 0, "backorder_limit": 0, "backordered": 0}]


async def test_downgrade_to_0001_restores_the_old_schema_and_keeps_the_rows(scratch):
    url, engine = scratch
    await migrate(url, "0001")
    await seed_0001(engine)
    before = await rows(engine, LEVELS)
    await migrate(url, "head")

    await migrate(url, "0001", down=True)

    assert await rows(engine, LEVELS) == before
    assert not {"safety_stock", "reorder_point", "backorder_limit", "backordered"} & (
        await columns(engine, "stocks")
    )
    assert "backordered" not in await columns(engine, "reservations")
    assert "ck_stocks_available_not_negative" in await checks(engine)
    assert "ck_stocks_available_within_backorder_limit" not in await checks(engine)
    # and up again: the revision runs on a database it was downgraded from
    await migrate(url, "head")
    assert await rows(engine, LEVELS) == before


async def test_downgrade_refuses_a_row_below_zero_and_changes_nothing(scratch):
    url, engine = scratch
    # at 0002: a downgrade from a later head is one transaction, rolled back to that head
    await migrate(url, "0002")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, warehouse_id, available, reserved, total, "
                f"version, backorder_limit) VALUES ('{STOCK}', 'p', 'default', -2, 2, 0, 1, 5)"
            )
        )
    with pytest.raises(DBAPIError, match="available_not_negative"):
        await migrate(url, "0001", down=True)
    assert "backorder_limit" in await columns(engine, "stocks")
    assert await rows(engine, "SELECT version_num FROM alembic_version") == [
        {"version_num": "0002"}
    ]


async def test_the_models_mirror_the_migrations(scratch):
    url, engine = scratch
    await migrate(url, "0001")
    async with engine.connect() as conn:
        before = await conn.run_sync(schema_diff)
    # the comparison sees what 0002 adds (so an empty diff below means something)
    added = {(d[0], d[3].name) for d in before if d[0] == "add_column"}
    assert ("add_column", "backorder_limit") in added
    assert ("add_index", "ix_reservations_backordered") in {
        (d[0], d[1].name) for d in before if d[0] == "add_index"
    }
    await migrate(url, "head")
    async with engine.connect() as conn:
        diff = await conn.run_sync(schema_diff)
    assert diff == []


# --- the CHECKs -------------------------------------------------------------------------------


async def insert_stock(conn: AsyncConnection, available: int, limit: int, **extra: int) -> None:
    columns = {"available": available, "reserved": 0, "total": available, "version": 1}
    columns |= {"backorder_limit": limit, **extra}
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    await conn.execute(
        text(
            f"INSERT INTO stocks (id, product_id, warehouse_id, {names}) "
            f"VALUES (gen_random_uuid(), :product, 'default', {values})"
        ),
        {"product": f"p-{uuid.uuid4().hex[:8]}", **columns},
    )


async def test_available_may_go_down_to_minus_the_backorder_limit_and_no_lower(db_engine):
    async with db_engine.begin() as conn:
        await insert_stock(conn, -3, 3)
        await insert_stock(conn, 0, 0)
    for available, limit in ((-4, 3), (-1, 0)):
        with pytest.raises(IntegrityError, match="ck_stocks_available_within_backorder_limit"):
            async with db_engine.begin() as conn:
                await insert_stock(conn, available, limit)
    # a limit lowered under the row's backorders too
    with pytest.raises(IntegrityError, match="available_within_backorder_limit"):
        async with db_engine.begin() as conn:
            await conn.execute(text("UPDATE stocks SET backorder_limit = 2 WHERE available = -3"))


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("safety_stock", -1, "ck_stocks_safety_stock_not_negative"),
        ("reorder_point", -1, "ck_stocks_reorder_point_not_negative"),
        ("backordered", -1, "ck_stocks_backordered_not_negative"),
    ],
)
async def test_policy_columns_refuse_negatives(db_engine, column, value, constraint):
    with pytest.raises(IntegrityError, match=constraint):
        async with db_engine.begin() as conn:
            await insert_stock(conn, 0, 0, **{column: value})


async def test_a_line_backorders_no_more_than_its_quantity(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
    for value in (3, -1):
        with pytest.raises(IntegrityError, match="ck_reservations_backordered_within_quantity"):
            async with db_engine.begin() as conn:
                await conn.execute(text(f"UPDATE reservations SET backordered = {value}"))


# --- the ledger's reads and writes --------------------------------------------------------------


async def _backordered_ledger(conn: AsyncConnection) -> None:
    """A sound ledger with backorders: order o-1 reserved 2 units on an empty row that allows 5
    backorders (a safety stock of 1, an alert at 4), so all 2 are backordered."""
    await conn.execute(
        text(
            "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, "
            "total, version, safety_stock, reorder_point, backorder_limit, backordered) VALUES "
            f"('{STOCK}', 'p', 'v', 'default', -2, 2, 0, 2, 1, 4, 5, 2)"
        )
    )
    await conn.execute(
        text(
            "INSERT INTO orders (order_id, state, items, version) VALUES ('o-1', 'RESERVED', "
            """'[{"product_id": "p", "variant_id": "v", "quantity": 2}]', 1)"""
        )
    )
    await conn.execute(
        text(
            "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, "
            "warehouse_id, quantity, status, expires_at, backordered) VALUES "
            f"('{LINE}', 'o-1', '{STOCK}', 'p', 'v', 'default', 2, 'PENDING', now(), 2)"
        )
    )
    await conn.execute(
        text(
            "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, "
            "operation, quantity, available_after, reserved_after, total_after, actor, "
            f"order_id) VALUES ('{STOCK}', 'p', 'v', 'default', 'RESERVE', 2, -2, 2, 0, 'engine', "
            "'o-1')"
        )
    )


async def test_reads_carry_the_policy_and_the_backordered_units(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
        await insert_stock(conn, 4, 0)
        plain_skus = await _skus(conn, "backorder_limit = 0")
        levels = await levels_of(conn, [SKU])
    async with driver_transaction(db_engine) as batch:
        locked = await ledger.lock_stocks(batch, [SKU])
        plain = await ledger.lock_stocks(batch, plain_skus)
        lines = await ledger.load_reservations(batch, ["o-1"])

    row = locked[STOCK]
    assert row.policy == StockPolicy(safety_stock=1, reorder_point=4, backorder_limit=5)
    assert row.backordered == 2
    assert row.levels == Levels(-2, 2, 0)
    # a row without a policy shares the default object: no allocation on the hot path
    assert [r.policy for r in plain.values()] == [DEFAULT_POLICY]
    assert next(iter(plain.values())).policy is DEFAULT_POLICY
    assert [(r.reservation_id, r.backordered) for r in lines["o-1"]] == [(LINE, 2)]
    assert lines["o-1"][0].created_at is not None
    [(level, active)] = levels[SKU]
    assert active
    assert (level.safety_stock, level.reorder_point, level.backorder_limit) == (1, 4, 5)
    assert (level.backordered, level.available, level.sellable) == (2, -2, -3)


async def _skus(conn: AsyncConnection, where: str) -> list[Sku]:
    result = await conn.execute(text(f"SELECT product_id, variant_id FROM stocks WHERE {where}"))
    return [Sku(product, variant) for product, variant in result]


async def test_write_plan_writes_policies_new_lines_and_fills(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
    expires = datetime.now(UTC) + timedelta(minutes=15)
    new_line = "00000000-0000-4000-8000-0000000000b2"
    filled_new_line = "00000000-0000-4000-8000-0000000000b3"
    async with driver_transaction(db_engine) as conn:
        row = (await ledger.lock_stocks(conn, [SKU]))[STOCK]
        # the batch: a policy change, two new backordered lines (one of them filled in the
        # same batch), the old line partly filled and committed at once
        row.policy = StockPolicy(safety_stock=0, reorder_point=None, backorder_limit=9)
        row.levels = Levels(-3, 6, 3)
        row.backordered = 4
        row.version += 1
        plan = Plan(
            new_reservations=[
                ReservationRow(
                    new_line, "o-2", STOCK, SKU, "default", 3, ReservationStatus.PENDING, expires, 3
                ),
                ReservationRow(
                    filled_new_line,
                    "o-3",
                    STOCK,
                    SKU,
                    "default",
                    1,
                    ReservationStatus.PENDING,
                    expires,
                    1,
                ),
            ],
            reservation_status={LINE: ReservationStatus.COMMITTED},
            stock_changes={STOCK: StockChange(row, "SET_POLICY", None)},
            backorder_fills={LINE: 1, filled_new_line: 0},
        )
        await plan_sql.write_plan(conn, plan, [])

    assert await rows(
        db_engine,
        "SELECT available, reserved, total, version, safety_stock, reorder_point, "
        "backorder_limit, backordered FROM stocks",
    ) == [
        {
            "available": -3,
            "reserved": 6,
            "total": 3,
            "version": 3,
            "safety_stock": 0,
            "reorder_point": None,
            "backorder_limit": 9,
            "backordered": 4,
        }
    ]
    assert await rows(
        db_engine, "SELECT id::text, status, backordered FROM reservations ORDER BY id"
    ) == [
        {"id": LINE, "status": "COMMITTED", "backordered": 1},
        {"id": new_line, "status": "PENDING", "backordered": 3},
        {"id": filled_new_line, "status": "PENDING", "backordered": 0},
    ]
    # a fill alone (no status) leaves the status as it is
    async with driver_transaction(db_engine) as conn:
        await plan_sql.write_plan(conn, Plan(backorder_fills={new_line: 2}), [])
    assert await rows(
        db_engine, f"SELECT status, backordered FROM reservations WHERE id = '{new_line}'"
    ) == [{"status": "PENDING", "backordered": 2}]


async def test_open_backordered_lines_oldest_first_with_the_orders_other_lines(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)  # o-1: 2 backordered on STOCK
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, warehouse_id, available, reserved, total, "
                f"version, backorder_limit, backordered) VALUES "
                f"('{OTHER_STOCK}', 'q', 'default', -1, 1, 0, 1, 5, 1)"
            )
        )
        at = datetime(2026, 1, 1, tzinfo=UTC)
        lines = [
            # (id, order, stock, quantity, backordered, status, created seconds after ``at``)
            ("...b1", "o-2", STOCK, 3, 3, "COMMITTED", 5),
            ("...b2", "o-3", STOCK, 2, 1, "PENDING", 1),
            ("...b3", "o-4", STOCK, 2, 2, "RELEASED", 0),  # closed: not a backorder
            ("...b4", "o-5", STOCK, 2, 0, "PENDING", 0),  # nothing backordered
            ("...b5", "o-3", OTHER_STOCK, 1, 1, "PENDING", 3),  # o-3's line on another row
            ("...b6", "o-6", OTHER_STOCK, 1, 1, "PENDING", 0),  # another row, another order
            ("...b7", "o-2", STOCK, 1, 1, "PENDING", 5),  # same time as b1: by id
        ]
        for suffix, order, stock, quantity, backordered, status, seconds in lines:
            await conn.execute(
                text(
                    "INSERT INTO reservations (id, order_id, stock_id, product_id, "
                    "warehouse_id, quantity, status, expires_at, backordered, created_at) "
                    "VALUES (:id, :o, :s, 'p', 'default', :q, :st, now(), :b, :at)"
                ),
                {
                    "id": _line_id(suffix),
                    "o": order,
                    "s": stock,
                    "q": quantity,
                    "st": status,
                    "b": backordered,
                    "at": at + timedelta(seconds=seconds),
                },
            )
        await conn.execute(
            text(f"UPDATE reservations SET created_at = '{at.isoformat()}' WHERE id = '{LINE}'")
        )
    async with driver_transaction(db_engine) as batch:
        found = await backorder_sql.lock_open_lines(batch, [STOCK])
        assert await backorder_sql.lock_open_lines(batch, []) == []

    assert [
        (line.reservation_id, line.order_id, line.stock_id, line.backordered) for line in found
    ] == [
        (LINE, "o-1", STOCK, 2),
        (_line_id("...b2"), "o-3", STOCK, 1),
        (_line_id("...b5"), "o-3", OTHER_STOCK, 1),
        (_line_id("...b1"), "o-2", STOCK, 3),
        (_line_id("...b7"), "o-2", STOCK, 1),
    ]
    assert [line.created_at for line in found] == sorted(line.created_at for line in found)


def _line_id(suffix: str) -> str:
    return f"00000000-0000-4000-8000-0000000000{suffix.strip('.')}"


# --- the invariants -----------------------------------------------------------------------------


async def _passes(conn: AsyncConnection) -> dict[str, list[str]]:
    """What the full and the bounded pass find, on this connection's view."""
    _, changed = await find_changed(conn, within=1_000_000, steps=20)
    return {
        "full": [p.text for p in await find_all(conn)],
        "bounded": [p.text for p in changed],
    }


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        # the row's count of backordered units disagrees with its lines, either way
        ("UPDATE reservations SET backordered = 1", "backordered 2 but its open reservations'"),
        ("UPDATE stocks SET backordered = 3", "backordered 3 but its open reservations'"),
        # a closed line's backordered units no longer count
        (
            "UPDATE reservations SET status = 'RELEASED'",
            "backordered 2 but its open reservations' backordered units sum to 0",
        ),
        # below zero by more than the row's backordered units
        (
            "UPDATE stocks SET backordered = 1; UPDATE reservations SET backordered = 1",
            "available -2 is 2 below zero, more than its 1 backordered units",
        ),
        # below -backorder_limit (the CHECK forbids it: dropped for the test, then rolled back)
        (
            "ALTER TABLE stocks DROP CONSTRAINT ck_stocks_available_within_backorder_limit; "
            "UPDATE stocks SET backorder_limit = 1",
            "available -2 is below -backorder_limit (-1)",
        ),
    ],
)
async def test_each_policy_invariant_names_the_broken_row(db_engine, damage, found):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
    assert await check(db_engine) == []
    async with db_engine.connect() as conn, conn.begin():
        assert await _passes(conn) == {"full": [], "bounded": []}
    async with db_engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for statement in damage.split("; "):
                await conn.execute(text(statement))
            problems = await _passes(conn)
        finally:
            await transaction.rollback()
    for name, texts in problems.items():
        assert any(found in problem for problem in texts), (name, texts)
        assert any(f"stock {STOCK} (p:v@default)" in problem for problem in texts), texts
    assert await check(db_engine) == []  # rolled back


async def test_a_committed_line_keeps_its_backorders_counted(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
        # o-1 is paid while its 2 units are still backordered: committed, not filled
        await conn.execute(text("UPDATE reservations SET status = 'COMMITTED'"))
        await conn.execute(text("UPDATE orders SET state = 'COMMITTED'"))
        await conn.execute(text("UPDATE stocks SET reserved = 0, total = -2"))
        await conn.execute(
            text(
                "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, "
                "operation, quantity, available_after, reserved_after, total_after, actor) "
                f"VALUES ('{STOCK}', 'p', 'v', 'default', 'COMMIT', 2, -2, 0, -2, 'engine')"
            )
        )
    assert await check(db_engine) == []


async def policy_movement(conn: AsyncConnection, available: int, reserved: int) -> None:
    await conn.execute(
        text(
            "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, "
            "operation, quantity, available_after, reserved_after, total_after, actor) "
            f"VALUES ('{STOCK}', 'p', 'v', 'default', 'POLICY', 0, :a, :r, :t, 'admin')"
        ),
        {"a": available, "r": reserved, "t": available + reserved},
    )


async def test_a_policy_change_replays_as_no_change_of_levels(db_engine):
    async with db_engine.begin() as conn:
        await _backordered_ledger(conn)
        await policy_movement(conn, -2, 2)  # SetStockPolicy: recorded with the levels it kept
    assert await check(db_engine) == []
    async with db_engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await policy_movement(conn, -1, 2)  # one that claims to have moved a level
            problems = [p.text for p in await find_all(conn)]
        finally:
            await transaction.rollback()
    assert any("movement POLICY 0 from" in problem for problem in problems), problems
