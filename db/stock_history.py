"""GetStock ``as_of``'s SQL: a SKU's levels at a past instant, rebuilt from the movement ledger.

Every change of a stock row writes a movement with the figures after it (``available_after``,
``reserved_after``, ``total_after``) in the same transaction, stamped ``created_at``: that
transaction's start (PostgreSQL ``now()``). A row's levels at instant ``at`` are therefore
the ``*_after`` figures of its last movement among the transactions that started at or
before ``at``; a row with no such movement did not exist then and is left out.

"Last" is found in two steps, each an index probe per stock row:

1. the movement that started last at or before ``at`` (``created_at DESC, id DESC``: the
   index ``ix_stock_movements_stock_id_created_at`` on ``(stock_id, created_at, id)``, from
   revision 0004);
2. then, in the row's own order (``id``, under the row lock: the order the changes were
   applied), the movements right after it as long as they too started at or before ``at``
   (``ix_stock_movements_stock_id_id``). Without concurrency this is one probe that finds
   nothing. It matters when two transactions wrote the same row out of their start order
   (the later-started one got the row lock first): the earlier-started one's movement has
   the larger id and builds on the other's figures, so step 1 alone would answer the figures
   it overwrote, for every instant until the row's next change.

Read-only and one statement (one snapshot, one round trip); the same statement compares
``at`` with the database's clock, the clock that stamps the movements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.results import StockLevel
from service.domain.values import Sku

_AT = "CAST(:at AS timestamptz)"

LEVELS_AT = text(
    "WITH RECURSIVE "
    f"instant AS (SELECT {_AT} > clock_timestamp() + make_interval(secs => :skew) AS future), "
    # the SKU's stock rows (NOT_FOUND when none), not deleted by then; none for a future instant
    "candidates AS (SELECT s.id, s.warehouse_id, w.priority "
    " FROM stocks s JOIN warehouses w ON w.id = s.warehouse_id "
    " WHERE s.product_id = :product AND coalesce(s.variant_id, '') = :variant "
    " AND (CAST(:warehouse AS text) IS NULL OR s.warehouse_id = CAST(:warehouse AS text)) "
    f" AND (s.deleted_at IS NULL OR s.deleted_at > {_AT}) "
    " AND NOT (SELECT future FROM instant)), "
    "walk AS ("
    # 1. the movement that started last at or before the instant
    " SELECT c.id AS stock_id, m.id, m.available_after, m.reserved_after, m.total_after "
    " FROM candidates c CROSS JOIN LATERAL (SELECT id, available_after, reserved_after, "
    "  total_after FROM stock_movements "
    f"  WHERE stock_id = c.id AND created_at <= {_AT} "
    "  ORDER BY created_at DESC, id DESC LIMIT 1) m "
    " UNION ALL "
    # 2. the row's next movements by id, while they started at or before the instant
    " SELECT w.stock_id, n.id, n.available_after, n.reserved_after, n.total_after "
    " FROM walk w CROSS JOIN LATERAL (SELECT id, created_at, available_after, "
    "  reserved_after, total_after FROM stock_movements "
    "  WHERE stock_id = w.stock_id AND id > w.id ORDER BY id LIMIT 1) n "
    f" WHERE n.created_at <= {_AT}), "
    "last AS (SELECT DISTINCT ON (stock_id) * FROM walk ORDER BY stock_id, id DESC) "
    # one row at least (the instant's), so that a future instant is told even with no rows
    "SELECT i.future, c.id, c.warehouse_id, l.available_after, l.reserved_after, "
    "l.total_after FROM instant i "
    "LEFT JOIN (candidates c LEFT JOIN last l ON l.stock_id = c.id) ON true "
    "ORDER BY c.priority, c.warehouse_id"
)


@dataclass(frozen=True, slots=True)
class LevelsAt:
    future: bool  # the instant is beyond the database's clock plus the allowance: nothing read
    rows: int  # the SKU's stock rows (in the warehouse, if one was named), with levels then or not
    levels: tuple[StockLevel, ...]  # the rows that existed then, by warehouse priority


async def levels_at(
    conn: AsyncConnection, sku: Sku, warehouse_id: str | None, at: datetime, skew: timedelta
) -> LevelsAt:
    """The levels of ``sku``'s rows (in ``warehouse_id`` only, if given) at ``at``.

    Only the levels are historical: each ``StockLevel`` carries ``available``, ``reserved``
    and ``total`` as they were, and no policy, backordered units or version (defaults), which
    the movements do not record."""
    result = await conn.execute(
        LEVELS_AT,
        {
            "at": at,
            "skew": skew.total_seconds(),
            "product": sku.product_id,
            "variant": sku.variant_id or "",
            "warehouse": warehouse_id,
        },
    )
    future, rows, levels = False, 0, []
    for row in result:
        future = row.future
        if row.id is None:
            continue
        rows += 1
        if row.available_after is not None:
            levels.append(
                StockLevel(
                    str(row.id),
                    sku,
                    row.warehouse_id,
                    row.available_after,
                    row.reserved_after,
                    row.total_after,
                    version=0,
                )
            )
    return LevelsAt(future, rows, tuple(levels))
