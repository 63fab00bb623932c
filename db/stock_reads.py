"""The read side's SQL: stock levels by SKU, for GetStock, CheckStock and BulkCheckStock.

Every level carries its row's policy (safety stock, reorder point, backorder limit) and its
backordered units: what ``StockLevel.sellable`` and the API report follow from them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.results import StockLevel
from service.domain.values import Sku

# What ``level_of`` reads: a stock row's levels, version and policy (``s`` is ``stocks``).
LEVEL_COLUMNS = (
    "s.id, s.product_id, s.variant_id, s.warehouse_id, s.available, s.reserved, s.total, "
    "s.version, s.safety_stock, s.reorder_point, s.backorder_limit, s.backordered"
)

LEVELS_OF_SKUS = text(
    f"SELECT {LEVEL_COLUMNS}, w.active FROM stocks s JOIN warehouses w ON w.id = s.warehouse_id "
    "WHERE s.deleted_at IS NULL AND (s.product_id, coalesce(s.variant_id, '')) IN "
    "(SELECT * FROM unnest(CAST(:products AS text[]), CAST(:variants AS text[]))) "
    "ORDER BY w.priority, s.warehouse_id"
)


async def levels_of(
    conn: AsyncConnection, skus: Iterable[Sku]
) -> dict[Sku, list[tuple[StockLevel, bool]]]:
    """Every stock row of the SKUs, with whether its warehouse is active, by priority."""
    wanted = sorted(set(skus))
    found: dict[Sku, list[tuple[StockLevel, bool]]] = {sku: [] for sku in wanted}
    if not wanted:
        return found
    result = await conn.execute(
        LEVELS_OF_SKUS,
        {
            "products": [s.product_id for s in wanted],
            "variants": [s.variant_id or "" for s in wanted],
        },
    )
    for row in result:
        level = level_of(row)
        found.setdefault(level.sku, []).append((level, row.active))
    return found


def level_of(row: Any) -> StockLevel:
    """A stock row read with ``LEVEL_COLUMNS`` (any query naming them so) as a StockLevel."""
    return StockLevel(
        str(row.id),
        Sku(row.product_id, row.variant_id),
        row.warehouse_id,
        row.available,
        row.reserved,
        row.total,
        row.version,
        safety_stock=row.safety_stock,
        reorder_point=row.reorder_point,
        backorder_limit=row.backorder_limit,
        backordered=row.backordered,
    )
