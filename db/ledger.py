"""The SQL the reservation engine runs: bulk, set-based, rows locked in one global order.

Every function takes the batch's connection (inside its transaction) and never commits.
Arrays go in through ``unnest`` so a batch of any size costs the same number of round trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.planner import (
    OrderRow,
    Plan,
    ReservationRow,
    StockRow,
    Warehouse,
)
from service.domain.values import Item, Levels, OrderState, ReservationStatus, Sku

# Orders that do not exist yet cannot be row-locked, so every batch takes transaction-scoped
# advisory locks on its order ids, sorted, before it reads or writes any of them.
LOCK_ORDERS = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT DISTINCT hashtextextended(o, 0) AS k FROM unnest(CAST(:ids AS text[])) AS o "
    "ORDER BY 1) AS keys"
)

CLAIM_EVENTS = text(
    "INSERT INTO processed_events (topic, event_id, order_id) "
    "SELECT * FROM unnest(CAST(:topics AS text[]), CAST(:ids AS text[]), CAST(:orders AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING topic, event_id"
)

LOAD_ORDERS = text(
    "SELECT order_id, state, items, ttl_seconds, expires_at, version, last_event_id "
    "FROM orders WHERE order_id = ANY(CAST(:ids AS text[]))"
)

LOAD_RESERVATIONS = text(
    "SELECT id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status, "
    "expires_at FROM reservations WHERE order_id = ANY(CAST(:ids AS text[])) "
    "AND deleted_at IS NULL ORDER BY created_at, id"
)

LOAD_WAREHOUSES = text(
    "SELECT id, priority, active FROM warehouses WHERE deleted_at IS NULL"
)

ENSURE_STOCKS = text(
    "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "version) SELECT id, p, v, w, 0, 0, 0, 0 FROM unnest(CAST(:ids AS uuid[]), "
    "CAST(:products AS text[]), CAST(:variants AS text[]), CAST(:warehouses AS text[])) "
    "AS n(id, p, v, w) ON CONFLICT DO NOTHING RETURNING id"
)

# Locks are taken in stock id order: two batches can never wait on each other in a cycle.
LOCK_STOCKS = text(
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.available, s.reserved, s.total, "
    "s.version, w.priority, w.active FROM stocks s JOIN warehouses w ON w.id = s.warehouse_id "
    "WHERE s.deleted_at IS NULL AND ("
    "(s.product_id, coalesce(s.variant_id, '')) IN "
    "(SELECT * FROM unnest(CAST(:products AS text[]), CAST(:variants AS text[]))) "
    "OR s.id = ANY(CAST(:stock_ids AS uuid[]))) "
    "ORDER BY s.id FOR UPDATE OF s"
)

DELETE_STOCKS = text("DELETE FROM stocks WHERE id = ANY(CAST(:ids AS uuid[]))")

WRITE_STOCKS = text(
    "UPDATE stocks AS s SET available = v.a, reserved = v.r, total = v.t, version = v.ver, "
    "updated_at = now() FROM unnest(CAST(:ids AS uuid[]), CAST(:a AS bigint[]), "
    "CAST(:r AS bigint[]), CAST(:t AS bigint[]), CAST(:ver AS bigint[])) AS v(id, a, r, t, ver) "
    "WHERE s.id = v.id"
)

INSERT_RESERVATIONS = text(
    "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, "
    "quantity, status, expires_at) SELECT * FROM unnest(CAST(:ids AS uuid[]), "
    "CAST(:orders AS text[]), CAST(:stocks AS uuid[]), CAST(:products AS text[]), "
    "CAST(:variants AS text[]), CAST(:warehouses AS text[]), CAST(:quantities AS bigint[]), "
    "CAST(:statuses AS text[]), CAST(:expires AS timestamptz[]))"
)

SETTLE_RESERVATIONS = text(
    "UPDATE reservations AS r SET status = v.status, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[])) AS v(id, status) "
    "WHERE r.id = v.id"
)

UPSERT_ORDERS = text(
    "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
    "last_event_id) SELECT o, s, CAST(i AS jsonb), t, e, ver, ev FROM unnest("
    "CAST(:orders AS text[]), CAST(:states AS text[]), CAST(:items AS text[]), "
    "CAST(:ttls AS integer[]), CAST(:expires AS timestamptz[]), CAST(:versions AS bigint[]), "
    "CAST(:events AS text[])) AS n(o, s, i, t, e, ver, ev) "
    "ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, items = excluded.items, "
    "ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at, "
    "version = excluded.version, last_event_id = excluded.last_event_id, updated_at = now()"
)

INSERT_MOVEMENTS = text(
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, reason, order_id, actor) "
    "SELECT * FROM unnest(CAST(:stocks AS uuid[]), CAST(:products AS text[]), "
    "CAST(:variants AS text[]), CAST(:warehouses AS text[]), CAST(:operations AS text[]), "
    "CAST(:quantities AS bigint[]), CAST(:a AS bigint[]), CAST(:r AS bigint[]), "
    "CAST(:t AS bigint[]), CAST(:reasons AS text[]), CAST(:orders AS text[]), "
    "CAST(:actors AS text[]))"
)

INSERT_OUTBOX = text(
    "INSERT INTO outbox (topic, key, payload) SELECT tp, k, CAST(p AS jsonb) FROM unnest("
    "CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:payloads AS text[])) AS n(tp, k, p)"
)


async def lock_orders(conn: AsyncConnection, order_ids: Sequence[str]) -> None:
    if order_ids:
        await conn.execute(LOCK_ORDERS, {"ids": list(order_ids)})


async def claim_events(
    conn: AsyncConnection, events: Sequence[tuple[str, str, str | None]]
) -> set[tuple[str, str]]:
    """Record (topic, event_id, order_id) as processed; returns the ones not seen before."""
    if not events:
        return set()
    result = await conn.execute(
        CLAIM_EVENTS,
        {
            "topics": [e[0] for e in events],
            "ids": [e[1] for e in events],
            "orders": [e[2] for e in events],
        },
    )
    return {(row.topic, row.event_id) for row in result}


async def load_orders(conn: AsyncConnection, order_ids: Sequence[str]) -> dict[str, OrderRow]:
    if not order_ids:
        return {}
    result = await conn.execute(LOAD_ORDERS, {"ids": list(order_ids)})
    return {
        row.order_id: OrderRow(
            order_id=row.order_id,
            state=OrderState(row.state),
            items=tuple(_item(raw) for raw in row.items),
            ttl_seconds=row.ttl_seconds,
            expires_at=row.expires_at,
            version=row.version,
            last_event_id=row.last_event_id,
        )
        for row in result
    }


async def load_reservations(
    conn: AsyncConnection, order_ids: Sequence[str]
) -> dict[str, list[ReservationRow]]:
    found: dict[str, list[ReservationRow]] = {}
    if not order_ids:
        return found
    for row in await conn.execute(LOAD_RESERVATIONS, {"ids": list(order_ids)}):
        found.setdefault(row.order_id, []).append(
            ReservationRow(
                reservation_id=str(row.id),
                order_id=row.order_id,
                stock_id=str(row.stock_id),
                sku=Sku(row.product_id, row.variant_id),
                warehouse_id=row.warehouse_id,
                quantity=row.quantity,
                status=ReservationStatus(row.status),
                expires_at=row.expires_at,
            )
        )
    return found


async def load_warehouses(conn: AsyncConnection) -> dict[str, Warehouse]:
    return {
        row.id: Warehouse(row.id, row.priority, row.active)
        for row in await conn.execute(LOAD_WAREHOUSES)
    }


async def ensure_stocks(
    conn: AsyncConnection, wanted: Sequence[tuple[str, Sku, str]]
) -> set[str]:
    """Create empty rows for (new id, sku, warehouse) that do not exist; returns the created."""
    if not wanted:
        return set()
    result = await conn.execute(
        ENSURE_STOCKS,
        {
            "ids": [w[0] for w in wanted],
            "products": [w[1].product_id for w in wanted],
            "variants": [w[1].variant_id for w in wanted],
            "warehouses": [w[2] for w in wanted],
        },
    )
    return {str(row.id) for row in result}


async def lock_stocks(
    conn: AsyncConnection, skus: Iterable[Sku], stock_ids: Iterable[str]
) -> dict[str, StockRow]:
    sku_list = sorted(set(skus))
    ids = sorted(set(stock_ids))
    if not sku_list and not ids:
        return {}
    result = await conn.execute(
        LOCK_STOCKS,
        {
            "products": [s.product_id for s in sku_list],
            "variants": [s.variant_id or "" for s in sku_list],
            "stock_ids": ids,
        },
    )
    return {
        str(row.id): StockRow(
            stock_id=str(row.id),
            sku=Sku(row.product_id, row.variant_id),
            warehouse_id=row.warehouse_id,
            levels=Levels(row.available, row.reserved, row.total),
            version=row.version,
            priority=row.priority,
            active=row.active,
        )
        for row in result
    }


async def delete_stocks(conn: AsyncConnection, stock_ids: Iterable[str]) -> None:
    ids = list(stock_ids)
    if ids:
        await conn.execute(DELETE_STOCKS, {"ids": ids})


async def write_plan(
    conn: AsyncConnection,
    plan: Plan,
    outbox: Sequence[tuple[str, str, dict[str, Any]]],
) -> None:
    """Write every row the plan decided; the caller commits."""
    if plan.stock_changes:
        rows = [change.row for change in plan.stock_changes.values()]
        await conn.execute(
            WRITE_STOCKS,
            {
                "ids": [r.stock_id for r in rows],
                "a": [r.levels.available for r in rows],
                "r": [r.levels.reserved for r in rows],
                "t": [r.levels.total for r in rows],
                "ver": [r.version for r in rows],
            },
        )
    if plan.new_reservations:
        new = plan.new_reservations
        await conn.execute(
            INSERT_RESERVATIONS,
            {
                "ids": [r.reservation_id for r in new],
                "orders": [r.order_id for r in new],
                "stocks": [r.stock_id for r in new],
                "products": [r.sku.product_id for r in new],
                "variants": [r.sku.variant_id for r in new],
                "warehouses": [r.warehouse_id for r in new],
                "quantities": [r.quantity for r in new],
                "statuses": [r.status.value for r in new],
                "expires": [r.expires_at for r in new],
            },
        )
    settled = {
        rid: status
        for rid, status in plan.reservation_status.items()
        if rid not in {r.reservation_id for r in plan.new_reservations}
    }
    if settled:
        await conn.execute(
            SETTLE_RESERVATIONS,
            {"ids": list(settled), "statuses": [s.value for s in settled.values()]},
        )
    if plan.orders:
        orders = list(plan.orders.values())
        await conn.execute(
            UPSERT_ORDERS,
            {
                "orders": [o.order_id for o in orders],
                "states": [o.state.value for o in orders],
                "items": [json.dumps([_item_json(i) for i in o.items]) for o in orders],
                "ttls": [o.ttl_seconds for o in orders],
                "expires": [o.expires_at for o in orders],
                "versions": [o.version for o in orders],
                "events": [o.last_event_id for o in orders],
            },
        )
    if plan.movements:
        moves = plan.movements
        await conn.execute(
            INSERT_MOVEMENTS,
            {
                "stocks": [m.stock_id for m in moves],
                "products": [m.sku.product_id for m in moves],
                "variants": [m.sku.variant_id for m in moves],
                "warehouses": [m.warehouse_id for m in moves],
                "operations": [m.operation for m in moves],
                "quantities": [m.quantity for m in moves],
                "a": [m.after.available for m in moves],
                "r": [m.after.reserved for m in moves],
                "t": [m.after.total for m in moves],
                "reasons": [m.reason for m in moves],
                "orders": [m.order_id for m in moves],
                "actors": [m.actor for m in moves],
            },
        )
    if outbox:
        await conn.execute(
            INSERT_OUTBOX,
            {
                "topics": [o[0] for o in outbox],
                "keys": [o[1] for o in outbox],
                "payloads": [json.dumps(o[2], separators=(",", ":")) for o in outbox],
            },
        )


def _item(raw: dict[str, Any]) -> Item:
    return Item(
        Sku(raw["product_id"], raw.get("variant_id")), int(raw["quantity"]), raw.get("warehouse_id")
    )


def _item_json(item: Item) -> dict[str, Any]:
    return {
        "product_id": item.sku.product_id,
        "variant_id": item.sku.variant_id,
        "quantity": item.quantity,
        "warehouse_id": item.warehouse_id,
    }

