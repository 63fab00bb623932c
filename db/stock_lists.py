"""ListStock's and ListMovements' SQL: keyset pages (never OFFSET), every value a bound parameter.

Each page continues strictly after the key of the last row the previous page returned, in a
total order on columns that never change, so a page costs the same wherever it starts and a
position stays valid across writes (docs/architecture.md, "Queries and pagination"):

- stock rows by ``(product_id, coalesce(variant_id, ''), warehouse_id, id)``, compared in the
  "C" collation (byte order, whatever the database's collation): the order is the same in every
  deployment, and the rows of a product id prefix are one range of it, which
  ``ix_stocks_listing`` (and ``ix_stocks_warehouse_listing`` within a warehouse) serves;
- movements by ``id``, ascending or descending.

Filters an index serves narrow the scan (warehouse, prefix; a movement's order id, or its SKU
through the stock rows). The others (the stock flags; a movement's operation, warehouse or
time range without a SKU or order id) are checked on the rows the scan reads, and a page reads
at most ``SCAN_BUDGET`` rows: when the budget runs out first, the page ends there, with fewer
rows than asked for (none, even) and the key of the last row read as the place to go on from.
So no page reads the whole table, however rare the rows that match.

The statements are built from constant fragments, one per combination of the filters given:
each combination is its own prepared statement with its own plan, which an all-in-one query
with ``(:x IS NULL OR ...)`` would not get.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.stock_reads import LEVEL_COLUMNS, level_of
from service.domain.listing import StockKey
from service.domain.results import MovementView, Page, StockLevel
from service.domain.values import Sku

# The most rows one page reads for filters no index serves (a few tens of milliseconds).
SCAN_BUDGET = 50_000

# ListStock's order, in byte order (the columns' own collation is the database's). These
# expressions are ix_stocks_listing's columns, written alike (db/schema.py, VARIANT_KEY_C):
# the planner matches an index by expression and collation, so any other spelling sorts.
STOCK_ORDER = (
    's.product_id COLLATE "C", coalesce(s.variant_id COLLATE "C", \'\'), '
    's.warehouse_id COLLATE "C", s.id'
)
STOCK_AFTER = (
    f"({STOCK_ORDER}) > (:after_product, :after_variant, :after_warehouse, CAST(:after_id AS uuid))"
)
STOCK_FLAGS = {
    "below_reorder_point": (
        "s.reorder_point IS NOT NULL AND s.available - s.safety_stock <= s.reorder_point"
    ),
    "out_of_stock": "s.available - s.safety_stock <= 0",
    "backordered": "s.backordered > 0",
}

MOVEMENT_COLUMNS = (
    "m.id, m.stock_id, m.product_id, m.variant_id, m.warehouse_id, m.operation, m.quantity, "
    "m.available_after, m.reserved_after, m.total_after, m.reason, m.order_id, m.actor, "
    "m.created_at, m.transfer_id"
)
MOVEMENT_CONDITIONS = {
    "product_id": "m.product_id = :product_id",
    "variant_id": "coalesce(m.variant_id, '') = :variant_id",
    "warehouse_id": "m.warehouse_id = :warehouse_id",
    "order_id": "m.order_id = :order_id",
    "operation": "m.operation = :operation",
    "since": "m.created_at >= :since",
    "until": "m.created_at < :until",
}
# a movement's SKU and warehouse through its stock rows (ListMovements by product)
STOCK_CONDITIONS = {
    "product_id": "s.product_id = :product_id",
    "variant_id": "coalesce(s.variant_id, '') = :variant_id",
    "warehouse_id": "s.warehouse_id = :warehouse_id",
}


# -- ListStock --


async def list_stock(
    conn: AsyncConnection,
    *,
    warehouse_id: str | None,
    product_id_prefix: str | None,
    below_reorder_point: bool,
    out_of_stock: bool,
    backordered: bool,
    after: StockKey | None,
    page_size: int,
    budget: int = SCAN_BUDGET,
) -> Page[StockLevel, StockKey]:
    """Up to ``page_size`` stock rows (not deleted) after ``after`` in ListStock's order that
    pass every filter given; ``next`` is the key to go on after, None once nothing is left."""
    flags = tuple(
        name
        for name, wanted in (
            ("below_reorder_point", below_reorder_point),
            ("out_of_stock", out_of_stock),
            ("backordered", backordered),
        )
        if wanted
    )
    params: dict[str, Any] = {"limit": page_size + 1, "budget": budget}
    upper = None
    if warehouse_id is not None:
        params["warehouse_id"] = warehouse_id
    if product_id_prefix is not None:
        upper = prefix_successor(product_id_prefix)
        params |= {
            "prefix_low": product_id_prefix,
            "prefix_pattern": like_prefix(product_id_prefix),
        }
        if upper is not None:
            params["prefix_high"] = upper
    if after is not None:
        product, variant, warehouse, stock_id = after
        params |= {
            "after_product": product,
            "after_variant": variant,
            "after_warehouse": warehouse,
            "after_id": stock_id,
        }
    statement = _stock_statement(
        warehouse=warehouse_id is not None,
        prefix=product_id_prefix is not None,
        bounded=upper is not None,
        after=after is not None,
        flags=flags,
    )
    rows = (await conn.execute(statement, params)).all()
    return _page(rows, page_size, budget, level_of, _stock_key)


@cache
def _stock_statement(
    *, warehouse: bool, prefix: bool, bounded: bool, after: bool, flags: tuple[str, ...]
) -> TextClause:
    where = ["s.deleted_at IS NULL"]
    if warehouse:
        where.append('s.warehouse_id COLLATE "C" = :warehouse_id')
    if prefix:
        # the range lets the index serve the prefix; LIKE (its wildcards escaped) is the test
        where.append('s.product_id COLLATE "C" >= :prefix_low')
        if bounded:
            where.append('s.product_id COLLATE "C" < :prefix_high')
        where.append("s.product_id COLLATE \"C\" LIKE :prefix_pattern ESCAPE '\\'")
    if after:
        where.append(STOCK_AFTER)
    hit = " AND ".join(f"({STOCK_FLAGS[flag]})" for flag in flags) or "TRUE"
    return text(
        f"SELECT x.* FROM (SELECT {LEVEL_COLUMNS}, ({hit}) AS hit, "
        f"row_number() OVER (ORDER BY {STOCK_ORDER}) AS scanned, "
        's.product_id COLLATE "C" AS k1, coalesce(s.variant_id COLLATE "C", \'\') AS k2, '
        's.warehouse_id COLLATE "C" AS k3 '
        f"FROM stocks s WHERE {' AND '.join(where)} ORDER BY {STOCK_ORDER} LIMIT :budget) x "
        "WHERE x.hit OR x.scanned = :budget ORDER BY x.k1, x.k2, x.k3, x.id LIMIT :limit"
    )


def _stock_key(row: Any) -> StockKey:
    return (row.product_id, row.variant_id or "", row.warehouse_id, str(row.id))


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the strings that start with ``prefix``, taken literally: its
    ``\\``, ``%`` and ``_`` are escaped (the statement names ``\\`` as the escape character)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, in code point order
    (the "C" collation of a UTF-8 database): ``prefix`` with its last character, not counting
    trailing U+10FFFF, one code point further (past the surrogates, which text never holds).
    None when ``prefix`` is all U+10FFFF: no bound above."""
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point <= 0x10FFFF:
            if 0xD800 <= point <= 0xDFFF:
                point = 0xE000
            return "".join(chars) + chr(point)
    return None


# -- ListMovements --


async def list_movements(
    conn: AsyncConnection,
    *,
    product_id: str | None,
    variant_id: str | None,
    warehouse_id: str | None,
    order_id: str | None,
    operation: str | None,
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
    after: int | None,
    page_size: int,
    budget: int = SCAN_BUDGET,
) -> Page[MovementView, int]:
    """Up to ``page_size`` movements after the id ``after`` (below it when ``newest_first``)
    that pass every filter given (``variant_id`` only with ``product_id``; ``variant_id`` ""
    is the SKU without a variant); ``next`` is the id to go on after, None at the end."""
    given = {
        name: value
        for name, value in (
            ("product_id", product_id),
            ("variant_id", variant_id),
            ("warehouse_id", warehouse_id),
            ("order_id", order_id),
            ("operation", operation),
            ("since", since),
            ("until", until),
        )
        if value is not None
    }
    params: dict[str, Any] = {**given, "limit": page_size + 1, "budget": budget}
    if after is not None:
        params["after"] = after
    statement = _movement_statement(tuple(given), newest_first, after is not None)
    rows = (await conn.execute(statement, params)).all()
    return _page(rows, page_size, budget, _movement, _movement_id)


@cache
def _movement_statement(given: tuple[str, ...], newest_first: bool, after: bool) -> TextClause:
    order = "m.id DESC" if newest_first else "m.id"
    cursor = ["m.id < :after" if newest_first else "m.id > :after"] if after else []
    if "order_id" in given:
        # an order's few movements, by ix_stock_movements_order_id_id; the rest is checked
        where = [MOVEMENT_CONDITIONS[name] for name in given] + cursor
        return text(
            f"SELECT {MOVEMENT_COLUMNS}, TRUE AS hit, 0 AS scanned FROM stock_movements m "
            f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"
        )
    if "product_id" in given:
        # the SKU's stock rows (uq_stocks_sku_warehouse), then each row's movements in order
        # (ix_stock_movements_stock_id_id, or ..._stock_id_created_at for a time range), merged
        stocks = [STOCK_CONDITIONS[name] for name in given if name in STOCK_CONDITIONS]
        inner = ["m.stock_id = s.id"]
        inner += [MOVEMENT_CONDITIONS[name] for name in given if name not in STOCK_CONDITIONS]
        inner += cursor
        return text(
            f"SELECT m.*, TRUE AS hit, 0 AS scanned FROM stocks s CROSS JOIN LATERAL "
            f"(SELECT {MOVEMENT_COLUMNS} FROM stock_movements m WHERE {' AND '.join(inner)} "
            f"ORDER BY {order} LIMIT :limit) m "
            f"WHERE {' AND '.join(stocks)} ORDER BY {order} LIMIT :limit"
        )
    # the ledger in id order (its primary key), each row read checked: at most :budget rows
    hit = " AND ".join(f"({MOVEMENT_CONDITIONS[name]})" for name in given) or "TRUE"
    return text(
        f"SELECT x.* FROM (SELECT {MOVEMENT_COLUMNS}, ({hit}) AS hit, "
        f"row_number() OVER (ORDER BY {order}) AS scanned FROM stock_movements m "
        f"WHERE {' AND '.join(cursor) or 'TRUE'} ORDER BY {order} LIMIT :budget) x "
        f"WHERE x.hit OR x.scanned = :budget ORDER BY {order.replace('m.', 'x.')} LIMIT :limit"
    )


def _movement(row: Any) -> MovementView:
    return MovementView(
        id=row.id,
        stock_id=str(row.stock_id),
        sku=Sku(row.product_id, row.variant_id),
        warehouse_id=row.warehouse_id,
        operation=row.operation,
        quantity=row.quantity,
        available_after=row.available_after,
        reserved_after=row.reserved_after,
        total_after=row.total_after,
        reason=row.reason,
        order_id=row.order_id,
        actor=row.actor,
        created_at=row.created_at,
        transfer_id=None if row.transfer_id is None else str(row.transfer_id),
    )


def _movement_id(row: Any) -> int:
    return int(row.id)


# -- pages --

T = TypeVar("T")
K = TypeVar("K")


def _page(
    rows: Sequence[Any],
    page_size: int,
    budget: int,
    item: Callable[[Any], T],
    key: Callable[[Any], K],
) -> Page[T, K]:
    """The page in ``rows`` (in order, each with ``hit`` and ``scanned``; at most
    ``page_size + 1`` hits, and the row read last when the scan used up ``budget``)."""
    hits = [row for row in rows if row.hit]
    if len(hits) > page_size:  # more to come: go on after this page's last row
        return Page(tuple(item(row) for row in hits[:page_size]), key(hits[page_size - 1]))
    items = tuple(item(row) for row in hits)
    last_read = next((row for row in rows if row.scanned == budget), None)
    # the scan stopped at its budget: what lies beyond the last row it read is unread
    return Page(items, key(last_read) if last_read is not None else None)
