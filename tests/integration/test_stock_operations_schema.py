"""Revision 0006: ``reservations.returned`` and ``stock_movements.transfer_id``, on a scratch
database: the rows before it survive, the models mirror it, and it runs down and up again."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.scratch_database import before_0008, migrate, rows, schema_diff

STOCK = "00000000-0000-4000-8000-000000000001"
LINE = "00000000-0000-4000-8000-000000000002"


async def seed_0005(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, "
                f"reserved, total, version) VALUES ('{STOCK}', 'p', NULL, 'default', 5, 0, 5, 2)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, "
                "warehouse_id, quantity, status, expires_at) VALUES "
                f"('{LINE}', 'o-1', '{STOCK}', 'p', NULL, 'default', 2, 'COMMITTED', now())"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, "
                "quantity, available_after, reserved_after, total_after, actor) VALUES "
                f"('{STOCK}', 'p', 'default', 'ADD', 5, 5, 0, 5, 'seed')"
            )
        )


async def test_0006_keeps_the_rows_and_the_models_mirror_it(
    scratch: tuple[str, AsyncEngine],
) -> None:
    url, engine = scratch
    await migrate(url, "0005")
    await seed_0005(engine)
    await migrate(url, "0006")
    assert await rows(engine, "SELECT id::text, quantity, returned FROM reservations") == [
        {"id": LINE, "quantity": 2, "returned": 0}
    ]
    assert await rows(engine, "SELECT operation, transfer_id FROM stock_movements") == [
        {"operation": "ADD", "transfer_id": None}
    ]
    async with engine.connect() as conn:
        assert before_0008(await conn.run_sync(schema_diff)) == []
    async with engine.begin() as conn:
        checked = await conn.execute(
            text(
                "SELECT convalidated FROM pg_constraint "
                "WHERE conname = 'ck_reservations_returned_within_quantity'"
            )
        )
        assert checked.scalar_one() is True
    await migrate(url, "0005", down=True)
    async with engine.connect() as conn:
        assert {(d[0], d[2], d[3].name) for d in before_0008(await conn.run_sync(schema_diff))} == {
            ("add_column", "reservations", "returned"),
            ("add_column", "stock_movements", "transfer_id"),
        }
    await migrate(url, "head")
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []
