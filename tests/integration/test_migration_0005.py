"""Revision 0005: stock_movements becomes partitioned by month without losing a row, the id
sequence keeps counting, the models mirror the result, and the downgrade gives the rows back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.scratch_database import DROPPED_BY_0008, migrate, rows, schema_diff

pytestmark = pytest.mark.stack

STOCK = (
    "INSERT INTO stocks (id, product_id, warehouse_id, available, reserved, total, version) "
    "VALUES ('00000000-0000-0000-0000-000000000001', 'p-1', 'default', 5, 0, 5, 1)"
)
# 3,000 movements spread over the last five months (the oldest month gets a partition too)
MOVEMENTS = (
    "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, quantity, "
    "available_after, reserved_after, total_after, order_id, actor, created_at) "
    "SELECT '00000000-0000-0000-0000-000000000001', 'p-1', 'default', 'ADD', 1, g, 0, g, "
    "'ord-' || g, 'tester', now() - (g * interval '72 minutes') "
    "FROM generate_series(1, 3000) AS g"
)
CONTENT = (
    "SELECT id, stock_id, order_id, available_after, created_at FROM stock_movements ORDER BY id"
)


async def test_0005_partitions_movements_keeping_every_row_and_the_sequence(
    scratch: tuple[str, AsyncEngine],
) -> None:
    url, engine = scratch
    await migrate(url, "0004")
    async with engine.begin() as conn:
        await conn.execute(text(STOCK))
        await conn.execute(text(MOVEMENTS))
    before = await rows(engine, CONTENT)
    assert len(before) == 3000

    await migrate(url, "0005")
    assert await rows(engine, CONTENT) == before
    partitions = await rows(
        engine,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'stock_movements'::regclass ORDER BY 1",
    )
    names = [p["relname"] for p in partitions]
    assert names.pop(0) == "stock_movements_default"  # the safety net (db/partitions.py)
    oldest = min(r["created_at"] for r in before).astimezone(UTC)
    now = datetime.now(UTC)
    assert names[0] == f"stock_movements_p{oldest:%Y%m}"
    assert f"stock_movements_p{now:%Y%m}" in names
    assert len(names) >= 3  # this month and two ahead, at least
    async with engine.begin() as conn:
        inserted = await conn.execute(
            text(
                "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, "
                "quantity, available_after, reserved_after, total_after, actor) VALUES "
                "('00000000-0000-0000-0000-000000000001', 'p-1', 'default', 'ADD', 1, 1, 0, 1, "
                "'tester') RETURNING id"
            )
        )
        assert inserted.scalar_one() == max(r["id"] for r in before) + 1
    async with engine.connect() as conn:
        # the models are at head: only revision 0006's columns are missing here, and the
        # index that 0008 drops is still there
        diff = await conn.run_sync(schema_diff)
        assert {(d[0], d[2], d[3].name) for d in diff if d[0] == "add_column"} == {
            ("add_column", "reservations", "returned"),
            ("add_column", "stock_movements", "transfer_id"),
        }
        assert {(d[0], d[1].name) for d in diff if d[0] != "add_column"} == {
            ("remove_index", DROPPED_BY_0008),
        }

    await migrate(url, "0004", down=True)
    after_down = await rows(engine, CONTENT)
    assert after_down[:-1] == before and len(after_down) == 3001
    await migrate(url, "head")
    assert len(await rows(engine, CONTENT)) == 3001
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []
