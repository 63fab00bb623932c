"""The SQL the reservation engine runs: bulk, set-based, rows locked in one global order.

Every function but ``load_warehouses`` takes the batch's connection, the asyncpg connection
under a pooled one, inside its transaction (``db.session.driver_transaction``), and never
commits. The batch runs on the driver itself because SQLAlchemy's layer cost more than the
statements: 180 µs of CPU per statement against asyncpg's 70, and 450 µs for a BEGIN and a
COMMIT against 190, which a batch of a few orders (a gRPC caller's) pays in full.
A batch's rows go in as one JSON document per statement (``json_array_elements``), so a
batch of any size costs the same round trips, and encoding stays in C on both sides
(asyncpg encodes a ``text[]`` element by element, which cost more than the SQL itself).
The documents are encoded by msgspec: the plan's document is encoded while the batch holds its
hot rows' locks, and the standard library's encoder took 13 % of the engine's time there.
(Not orjson: Faust's ``json`` codec switches to orjson whenever it is installed, which would
change the bytes the workers write to Kafka, ``streams/expiry/changelog.py``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
from asyncpg import Connection
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.snapshot import OrderRow, ReservationRow, StockRow, Warehouse
from service.domain.values import (
    DEFAULT_POLICY,
    Item,
    Levels,
    OrderState,
    ReservationStatus,
    Sku,
    StockPolicy,
)

# Orders that do not exist yet cannot be row-locked, so every batch takes transaction-scoped
# advisory locks on its order ids, sorted, before it reads or writes any of them.
LOCK_ORDERS = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT DISTINCT hashtextextended(o, 0) AS k "
    "FROM json_array_elements_text(CAST($1 AS json)) AS o ORDER BY 1) AS keys"
)

UNCLAIM_EVENTS = (
    "DELETE FROM processed_events WHERE (topic, event_id) IN "
    "(SELECT e->>0, e->>1 FROM json_array_elements(CAST($1 AS json)) AS e)"
)

# What a batch reads before it locks its stock rows, in one round trip, after its order
# locks: the orders (an order pruned by retention, db/prune_sql.py, comes back from its
# tombstone: its final state, nothing else, marked pruned; a live row wins over a tombstone),
# the warehouses (read by every batch, so that a change holds from the next batch in every
# process), and the claim of the batch's events (``processed_events``). Each kind of row comes
# back as an array of records, decoded by asyncpg with its own types. The ids go in as a
# ``text[]`` compared with ``= ANY``: PostgreSQL probes the primary key with it, where a join
# with ``json_array_elements_text`` was planned as a scan of the whole table while it was small
# and stayed so in the connection's prepared statement as the table grew.
LOAD_BATCH = (
    "WITH claimed AS (INSERT INTO processed_events (topic, event_id, order_id) "
    "SELECT e->>0, e->>1, e->>2 FROM json_array_elements(CAST($2 AS json)) AS e "
    "ON CONFLICT DO NOTHING RETURNING topic, event_id) "
    "SELECT ARRAY(SELECT ROW(o.*) FROM ("
    "SELECT order_id, state, items, ttl_seconds, expires_at, version, last_event_id, "
    "allow_partial, false AS pruned FROM orders WHERE order_id = ANY(CAST($1 AS text[])) "
    "UNION ALL SELECT t.order_id, t.final_state, '[]'::jsonb, NULL, NULL, 0, NULL, false, true "
    "FROM order_tombstones t WHERE t.order_id = ANY(CAST($1 AS text[])) "
    "AND NOT EXISTS (SELECT FROM orders o WHERE o.order_id = t.order_id)) AS o) AS orders, "
    "ARRAY(SELECT ROW(id, priority, active) FROM warehouses WHERE deleted_at IS NULL) "
    "AS warehouses, "
    "ARRAY(SELECT ROW(topic, event_id) FROM claimed) AS claimed"
)

# Only for orders in the ledger (a batch of new orders has none, and skips this round trip).
LOAD_RESERVATIONS = (
    "SELECT id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status, "
    "expires_at, backordered, created_at, returned FROM reservations "
    "WHERE order_id = ANY(CAST($1 AS text[])) AND deleted_at IS NULL ORDER BY created_at, id"
)

LOAD_WAREHOUSES = text("SELECT id, priority, active FROM warehouses WHERE deleted_at IS NULL")

ENSURE_STOCKS = (
    "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "version) SELECT id, p, v, w, 0, 0, 0, 0 FROM unnest(CAST($1 AS uuid[]), "
    "CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS text[])) "
    "AS n(id, p, v, w) ON CONFLICT DO NOTHING RETURNING id"
)

# Locks are taken in stock id order: two batches can never wait on each other in a cycle.
# Every row of a SKU is locked, and only by SKU, so ``uq_stocks_sku_warehouse`` finds them: the
# rows of the batch's orders' reservations come in by their SKU too (a condition on ``s.id``
# beside it, with OR, made PostgreSQL filter the whole table, ``tests/integration/
# test_lock_stocks_plan.py``).
LOCK_STOCKS = (
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.available, s.reserved, s.total, "
    "s.version, s.safety_stock, s.reorder_point, s.backorder_limit, s.backordered, "
    "w.priority, w.active FROM stocks s JOIN warehouses w ON w.id = s.warehouse_id "
    "WHERE s.deleted_at IS NULL AND "
    "(s.product_id, coalesce(s.variant_id, '')) IN "
    "(SELECT * FROM unnest(CAST($1 AS text[]), CAST($2 AS text[]))) "
    "ORDER BY s.id FOR UPDATE OF s"
)


DELETE_STOCKS = "DELETE FROM stocks WHERE id = ANY(CAST($1 AS uuid[]))"


async def lock_orders(conn: Connection, order_ids: Sequence[str]) -> None:
    if order_ids:
        await conn.fetchval(LOCK_ORDERS, json_document(list(order_ids)))


async def unclaim_events(conn: Connection, events: Sequence[tuple[str, str]]) -> None:
    """Forget (topic, event_id) claimed in this transaction: the command changed nothing."""
    if events:
        await conn.execute(UNCLAIM_EVENTS, json_document(list(events)))


class BatchRows(NamedTuple):
    orders: dict[str, OrderRow]
    warehouses: dict[str, Warehouse]
    claimed: set[tuple[str, str]]  # (topic, event_id) of the events not seen before


async def load_batch(
    conn: Connection,
    order_ids: Sequence[str],
    events: Sequence[tuple[str, str, str | None]],
) -> BatchRows:
    """Read ``order_ids``' orders and every warehouse, and record the (topic, event_id,
    order_id) ``events`` as processed, in one statement. Call it after ``lock_orders``: it
    reads what the batches before this one committed."""
    orders, warehouses, claimed = await conn.fetchrow(
        LOAD_BATCH, list(order_ids), json_document(list(events))
    )
    return BatchRows(
        orders={values[0]: order_row(values) for values in orders},
        warehouses={w[0]: Warehouse(w[0], w[1], w[2]) for w in warehouses},
        claimed={(topic, event_id) for topic, event_id in claimed},
    )


async def load_reservations(
    conn: Connection, order_ids: Sequence[str]
) -> dict[str, list[ReservationRow]]:
    """The reservations of ``order_ids``, by order id, oldest first."""
    found: dict[str, list[ReservationRow]] = {}
    if not order_ids:
        return found
    for row in await conn.fetch(LOAD_RESERVATIONS, list(order_ids)):
        found.setdefault(row["order_id"], []).append(reservation_row(row))
    return found


def order_row(values: Sequence[Any]) -> OrderRow:
    """An ``orders`` row (or a tombstone's), from its columns in ``LOAD_BATCH``'s order."""
    order_id, state, items, ttl_seconds, expires_at, version, last_event_id, partial, pruned = (
        values
    )
    return OrderRow(
        order_id=order_id,
        state=OrderState(state),
        items=tuple(item_of(raw) for raw in items),
        ttl_seconds=ttl_seconds,
        expires_at=expires_at,
        version=version,
        last_event_id=last_event_id,
        allow_partial=partial,
        pruned=pruned,
    )


def reservation_row(values: Sequence[Any]) -> ReservationRow:
    """A ``reservations`` row as the domain holds it, from its columns in the order every
    query selects them (``LOAD_RESERVATIONS``, ``backorder_sql.LOCK_OPEN_LINES``)."""
    (
        rid,
        order_id,
        stock_id,
        product,
        variant,
        warehouse,
        quantity,
        status,
        expires_at,
        backordered,
        created_at,
        returned,
    ) = values
    return ReservationRow(
        reservation_id=str(rid),
        order_id=order_id,
        stock_id=str(stock_id),
        sku=Sku(product, variant),
        warehouse_id=warehouse,
        quantity=quantity,
        status=ReservationStatus(status),
        expires_at=expires_at,
        backordered=backordered,
        created_at=created_at,
        returned=returned,
    )


async def load_warehouses(conn: AsyncConnection) -> dict[str, Warehouse]:
    return {
        row.id: Warehouse(row.id, row.priority, row.active)
        for row in await conn.execute(LOAD_WAREHOUSES)
    }


async def ensure_stocks(conn: Connection, wanted: Sequence[tuple[str, Sku, str]]) -> set[str]:
    """Create empty rows for (new id, sku, warehouse) that do not exist; returns the created."""
    if not wanted:
        return set()
    result = await conn.fetch(
        ENSURE_STOCKS,
        [w[0] for w in wanted],
        [w[1].product_id for w in wanted],
        [w[1].variant_id for w in wanted],
        [w[2] for w in wanted],
    )
    return {str(row["id"]) for row in result}


async def lock_stocks(conn: Connection, skus: Iterable[Sku]) -> dict[str, StockRow]:
    """Lock and read every live stock row of ``skus`` (in every warehouse), in id order."""
    sku_list = list(set(skus))
    if not sku_list:
        return {}
    result = await conn.fetch(
        LOCK_STOCKS,
        [s.product_id for s in sku_list],
        [s.variant_id or "" for s in sku_list],
    )
    rows = {}
    for row in result:
        (rid, product, variant, warehouse, available, reserved, total, version) = row[:8]
        (safety_stock, reorder_point, backorder_limit, backordered, priority, active) = row[8:]
        stock_id = str(rid)
        rows[stock_id] = StockRow(
            stock_id=stock_id,
            sku=Sku(product, variant),
            warehouse_id=warehouse,
            levels=Levels(available, reserved, total),
            version=version,
            priority=priority,
            active=active,
            policy=policy_of(safety_stock, reorder_point, backorder_limit),
            backordered=backordered,
        )
    return rows


def policy_of(safety_stock: int, reorder_point: int | None, backorder_limit: int) -> StockPolicy:
    """A stock row's policy from its columns: the shared default when none is set (most rows),
    so the hot path builds no object for it."""
    if not safety_stock and reorder_point is None and not backorder_limit:
        return DEFAULT_POLICY
    return StockPolicy(safety_stock, reorder_point, backorder_limit)


async def delete_stocks(conn: Connection, stock_ids: Iterable[str]) -> None:
    ids = list(stock_ids)
    if ids:
        await conn.execute(DELETE_STOCKS, ids)


_ENCODER = msgspec.json.Encoder()


def json_document(value: Any) -> str:
    """One statement's parameter document. msgspec writes what the standard library's encoder
    wrote, as PostgreSQL reads it: StrEnum members as their values, tuples and NamedTuples as
    arrays, UTF-8 instead of ``\\u`` escapes (``tests/unit/test_json_document.py``)."""
    return _ENCODER.encode(value).decode()


def item_of(raw: dict[str, Any]) -> Item:
    """An item of ``orders.items`` (jsonb), as ``write_plan`` writes it."""
    return Item(
        Sku(raw["product_id"], raw.get("variant_id")), int(raw["quantity"]), raw.get("warehouse_id")
    )
