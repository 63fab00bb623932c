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

LOAD_WAREHOUSES = text("SELECT id, priority, active FROM warehouses WHERE deleted_at IS NULL")

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

# The whole plan in one statement (one round trip): data-modifying CTEs all run, and an
# empty array simply writes nothing.
WRITE_PLAN = text(
    "WITH stock_rows AS ("
    "UPDATE stocks AS s SET available = v.a, reserved = v.r, total = v.t, version = v.ver, "
    "updated_at = now() FROM unnest(CAST(:s_ids AS uuid[]), CAST(:s_a AS bigint[]), "
    "CAST(:s_r AS bigint[]), CAST(:s_t AS bigint[]), CAST(:s_ver AS bigint[])) "
    "AS v(id, a, r, t, ver) WHERE s.id = v.id RETURNING 1), "
    "new_reservations AS ("
    "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, "
    "quantity, status, expires_at) SELECT * FROM unnest(CAST(:n_ids AS uuid[]), "
    "CAST(:n_orders AS text[]), CAST(:n_stocks AS uuid[]), CAST(:n_products AS text[]), "
    "CAST(:n_variants AS text[]), CAST(:n_warehouses AS text[]), "
    "CAST(:n_quantities AS bigint[]), CAST(:n_statuses AS text[]), "
    "CAST(:n_expires AS timestamptz[])) RETURNING 1), "
    "settled AS ("
    "UPDATE reservations AS r SET status = v.status, updated_at = now() "
    "FROM unnest(CAST(:u_ids AS uuid[]), CAST(:u_statuses AS text[])) AS v(id, status) "
    "WHERE r.id = v.id RETURNING 1), "
    "order_rows AS ("
    "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
    "last_event_id) SELECT o, st, CAST(i AS jsonb), t, e, ver, ev FROM unnest("
    "CAST(:o_ids AS text[]), CAST(:o_states AS text[]), CAST(:o_items AS text[]), "
    "CAST(:o_ttls AS integer[]), CAST(:o_expires AS timestamptz[]), "
    "CAST(:o_versions AS bigint[]), CAST(:o_events AS text[])) AS n(o, st, i, t, e, ver, ev) "
    "ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, items = excluded.items, "
    "ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at, "
    "version = excluded.version, last_event_id = excluded.last_event_id, updated_at = now() "
    "RETURNING 1), "
    "movement_rows AS ("
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, reason, order_id, actor) "
    "SELECT * FROM unnest(CAST(:m_stocks AS uuid[]), CAST(:m_products AS text[]), "
    "CAST(:m_variants AS text[]), CAST(:m_warehouses AS text[]), CAST(:m_operations AS text[]), "
    "CAST(:m_quantities AS bigint[]), CAST(:m_a AS bigint[]), CAST(:m_r AS bigint[]), "
    "CAST(:m_t AS bigint[]), CAST(:m_reasons AS text[]), CAST(:m_orders AS text[]), "
    "CAST(:m_actors AS text[])) RETURNING 1), "
    "outbox_rows AS ("
    "INSERT INTO outbox (topic, key, payload) SELECT tp, k, CAST(p AS jsonb) FROM unnest("
    "CAST(:x_topics AS text[]), CAST(:x_keys AS text[]), CAST(:x_payloads AS text[])) "
    "AS n(tp, k, p) RETURNING 1) "
    "SELECT (SELECT count(*) FROM stock_rows), (SELECT count(*) FROM new_reservations), "
    "(SELECT count(*) FROM settled), (SELECT count(*) FROM order_rows), "
    "(SELECT count(*) FROM movement_rows), (SELECT count(*) FROM outbox_rows)"
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


async def ensure_stocks(conn: AsyncConnection, wanted: Sequence[tuple[str, Sku, str]]) -> set[str]:
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
    """Write every row the plan decided, in one round trip; the caller commits."""
    stocks = [change.row for change in plan.stock_changes.values()]
    new = plan.new_reservations
    new_ids = {r.reservation_id for r in new}
    settled = {k: s for k, s in plan.reservation_status.items() if k not in new_ids}
    orders = list(plan.orders.values())
    moves = plan.movements
    await conn.execute(
        WRITE_PLAN,
        {
            "s_ids": [r.stock_id for r in stocks],
            "s_a": [r.levels.available for r in stocks],
            "s_r": [r.levels.reserved for r in stocks],
            "s_t": [r.levels.total for r in stocks],
            "s_ver": [r.version for r in stocks],
            "n_ids": [r.reservation_id for r in new],
            "n_orders": [r.order_id for r in new],
            "n_stocks": [r.stock_id for r in new],
            "n_products": [r.sku.product_id for r in new],
            "n_variants": [r.sku.variant_id for r in new],
            "n_warehouses": [r.warehouse_id for r in new],
            "n_quantities": [r.quantity for r in new],
            "n_statuses": [r.status.value for r in new],
            "n_expires": [r.expires_at for r in new],
            "u_ids": list(settled),
            "u_statuses": [s.value for s in settled.values()],
            "o_ids": [o.order_id for o in orders],
            "o_states": [o.state.value for o in orders],
            "o_items": [json.dumps([_item_json(i) for i in o.items]) for o in orders],
            "o_ttls": [o.ttl_seconds for o in orders],
            "o_expires": [o.expires_at for o in orders],
            "o_versions": [o.version for o in orders],
            "o_events": [o.last_event_id for o in orders],
            "m_stocks": [m.stock_id for m in moves],
            "m_products": [m.sku.product_id for m in moves],
            "m_variants": [m.sku.variant_id for m in moves],
            "m_warehouses": [m.warehouse_id for m in moves],
            "m_operations": [m.operation for m in moves],
            "m_quantities": [m.quantity for m in moves],
            "m_a": [m.after.available for m in moves],
            "m_r": [m.after.reserved for m in moves],
            "m_t": [m.after.total for m in moves],
            "m_reasons": [m.reason for m in moves],
            "m_orders": [m.order_id for m in moves],
            "m_actors": [m.actor for m in moves],
            "x_topics": [o[0] for o in outbox],
            "x_keys": [o[1] for o in outbox],
            "x_payloads": [json.dumps(o[2], separators=(",", ":")) for o in outbox],
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
