"""Revision 0008: the reservation index that no query read is gone, the reads by status keep
an index, the models mirror the result, and the downgrade builds it again."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.scratch_database import DROPPED_BY_0008, migrate, rows, schema_diff

pytestmark = pytest.mark.stack

INDEXES = "SELECT indexname FROM pg_indexes WHERE tablename = 'reservations'"
# the invariant checks' read of pending lines (db/invariant_sql.py, RESERVED_MISMATCH)
PENDING_BY_STOCK = (
    "EXPLAIN SELECT stock_id, sum(quantity) FROM reservations WHERE status = 'PENDING' "
    "GROUP BY stock_id"
)


async def indexes(engine: AsyncEngine) -> set[str]:
    return {row["indexname"] for row in await rows(engine, INDEXES)}


async def test_0008_drops_the_unread_index_and_the_downgrade_builds_it_again(
    scratch: tuple[str, AsyncEngine],
) -> None:
    url, engine = scratch
    await migrate(url, "0007")
    assert DROPPED_BY_0008 in await indexes(engine)

    await migrate(url, "head")
    assert DROPPED_BY_0008 not in await indexes(engine)
    assert {"ix_reservations_stock_id_pending", "ix_reservations_order_id"} <= await indexes(engine)
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []
        await conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in await conn.execute(text(PENDING_BY_STOCK)))
    assert "ix_reservations_stock_id_pending" in plan

    await migrate(url, "0007", down=True)
    assert DROPPED_BY_0008 in await indexes(engine)
    await migrate(url, "head")
    assert DROPPED_BY_0008 not in await indexes(engine)
