"""The warehouses: ListWarehouses' read and UpsertWarehouse's write.

Every function takes a connection and never commits: the engine runs ``upsert_warehouse`` in a
transaction of its own. The engine loads the warehouses anew in every batch
(``db/ledger.py``: ``load_batch``, and ``lock_stocks`` joins each stock row with its
warehouse), so a change committed here holds from the next batch on, in every process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.validation import WarehouseRecord

# Every warehouse the engine sees (``ledger.load_batch`` skips soft-deleted ones too).
LIST_WAREHOUSES = text(
    "SELECT id, name, priority, active FROM warehouses WHERE deleted_at IS NULL "
    "ORDER BY priority, id"
)

# Create, or change every field of, the warehouse. Nothing deletes a warehouse today; should
# one have been soft-deleted, upserting its id brings it back, as a create would.
UPSERT_WAREHOUSE = text(
    "INSERT INTO warehouses (id, name, priority, active) "
    "VALUES (:id, :name, :priority, :active) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, priority = excluded.priority, "
    "active = excluded.active, deleted_at = NULL, updated_at = now() "
    "RETURNING id, name, priority, active"
)


async def list_warehouses(conn: AsyncConnection) -> list[WarehouseRecord]:
    """Every warehouse, lower priority first, then by id."""
    return [_record(row) for row in await conn.execute(LIST_WAREHOUSES)]


async def upsert_warehouse(conn: AsyncConnection, warehouse: WarehouseRecord) -> WarehouseRecord:
    """Write ``warehouse`` (created if new); returns the row as stored."""
    result = await conn.execute(
        UPSERT_WAREHOUSE,
        {
            "id": warehouse.warehouse_id,
            "name": warehouse.name,
            "priority": warehouse.priority,
            "active": warehouse.active,
        },
    )
    return _record(result.one())


def _record(row: Any) -> WarehouseRecord:
    return WarehouseRecord(row.id, row.name, row.priority, row.active)
