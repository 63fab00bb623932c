"""The SQL the reservation engine runs: bulk, set-based, rows locked in one global order.

Every function takes the batch's connection (inside its transaction) and never commits.
A batch's rows go in as one JSON document per statement (``json_array_elements``), so a
batch of any size costs the same round trips, and encoding stays in C on both sides
(asyncpg encodes a ``text[]`` element by element, which cost more than the SQL itself).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.outbox_sql import OUTBOX_CHANNEL
from service.domain.plan import Plan
from service.domain.snapshot import OrderRow, ReservationRow, StockRow, Warehouse
from service.domain.timestamps import IsoFormats
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
LOCK_ORDERS = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT DISTINCT hashtextextended(o, 0) AS k "
    "FROM json_array_elements_text(CAST(:ids AS json)) AS o ORDER BY 1) AS keys"
)

CLAIM_EVENTS = text(
    "INSERT INTO processed_events (topic, event_id, order_id) "
    "SELECT e->>0, e->>1, e->>2 FROM json_array_elements(CAST(:events AS json)) AS e "
    "ON CONFLICT DO NOTHING RETURNING topic, event_id"
)

# An order pruned by retention (db/prune_sql.py) comes back from its tombstone: its final
# state, nothing else, marked pruned (service/domain/order_machine.py pruned_step). One round
# trip either way; a live row wins over a tombstone.
LOAD_ORDERS = text(
    "WITH wanted AS (SELECT json_array_elements_text(CAST(:ids AS json)) AS order_id) "
    "SELECT order_id, state, items, ttl_seconds, expires_at, version, last_event_id, "
    "allow_partial, false AS pruned FROM orders WHERE order_id IN (SELECT order_id FROM wanted) "
    "UNION ALL SELECT t.order_id, t.final_state, '[]'::jsonb, NULL, NULL, 0, NULL, false, true "
    "FROM order_tombstones t WHERE t.order_id IN (SELECT order_id FROM wanted) "
    "AND NOT EXISTS (SELECT FROM orders o WHERE o.order_id = t.order_id)"
)

LOAD_RESERVATIONS = text(
    "SELECT id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status, "
    "expires_at, backordered, created_at FROM reservations "
    "WHERE order_id = ANY(CAST(:ids AS text[])) AND deleted_at IS NULL ORDER BY created_at, id"
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
    "s.version, s.safety_stock, s.reorder_point, s.backorder_limit, s.backordered, "
    "w.priority, w.active FROM stocks s JOIN warehouses w ON w.id = s.warehouse_id "
    "WHERE s.deleted_at IS NULL AND ("
    "(s.product_id, coalesce(s.variant_id, '')) IN "
    "(SELECT * FROM unnest(CAST(:products AS text[]), CAST(:variants AS text[]))) "
    "OR s.id = ANY(CAST(:stock_ids AS uuid[]))) "
    "ORDER BY s.id FOR UPDATE OF s"
)


DELETE_STOCKS = text("DELETE FROM stocks WHERE id = ANY(CAST(:ids AS uuid[]))")

# The whole plan in one statement (one round trip): data-modifying CTEs all run, and an
# empty list simply writes nothing. Rows are JSON arrays, positions as in ``write_plan``.
WRITE_PLAN = text(
    "WITH plan AS (SELECT CAST(:plan AS json) AS doc), "
    "stock_rows AS ("
    "UPDATE stocks AS s SET available = (e->>1)::bigint, reserved = (e->>2)::bigint, "
    "total = (e->>3)::bigint, version = (e->>4)::bigint, safety_stock = (e->>5)::bigint, "
    "reorder_point = (e->>6)::bigint, backorder_limit = (e->>7)::bigint, "
    "backordered = (e->>8)::bigint, updated_at = now() "
    "FROM plan, json_array_elements(plan.doc->'stocks') AS e "
    "WHERE s.id = (e->>0)::uuid RETURNING 1), "
    "new_reservations AS ("
    "INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, "
    "quantity, status, expires_at, backordered) SELECT (e->>0)::uuid, e->>1, (e->>2)::uuid, "
    "e->>3, e->>4, e->>5, (e->>6)::bigint, e->>7, (e->>8)::timestamptz, (e->>9)::bigint "
    "FROM plan, json_array_elements(plan.doc->'reservations') AS e RETURNING 1), "
    # A settled status and a backorder fill of one reservation are one UPDATE: a row updated
    # by two CTEs of one statement keeps only one of the changes. Null leaves a field as is.
    "settled AS ("
    "UPDATE reservations AS r SET status = coalesce(e->>1, r.status), "
    "backordered = coalesce((e->>2)::bigint, r.backordered), updated_at = now() "
    "FROM plan, json_array_elements(plan.doc->'settled') AS e "
    "WHERE r.id = (e->>0)::uuid RETURNING 1), "
    "order_rows AS ("
    "INSERT INTO orders (order_id, state, items, ttl_seconds, expires_at, version, "
    "last_event_id, allow_partial) SELECT e->>0, e->>1, (e->2)::jsonb, (e->>3)::integer, "
    "(e->>4)::timestamptz, (e->>5)::bigint, e->>6, (e->>7)::boolean "
    "FROM plan, json_array_elements(plan.doc->'orders') AS e "
    "ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, items = excluded.items, "
    "ttl_seconds = excluded.ttl_seconds, expires_at = excluded.expires_at, "
    "version = excluded.version, last_event_id = excluded.last_event_id, "
    "allow_partial = excluded.allow_partial, updated_at = now() "
    "RETURNING 1), "
    # Append-only, in the plan's order (an order's steps of one batch keep theirs by id);
    # ``at`` is the transaction's now(), the same for every row of the batch.
    "history_rows AS ("
    "INSERT INTO order_history (order_id, from_state, to_state, published, cause, at) "
    "SELECT e->>0, e->>1, e->>2, e->>3, e->>4, now() "
    "FROM plan, json_array_elements(plan.doc->'history') WITH ORDINALITY AS h(e, n) "
    "ORDER BY h.n RETURNING 1), "
    "movement_rows AS ("
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, reason, order_id, actor) "
    "SELECT (e->>0)::uuid, e->>1, e->>2, e->>3, e->>4, (e->>5)::bigint, (e->>6)::bigint, "
    "(e->>7)::bigint, (e->>8)::bigint, e->>9, e->>10, e->>11 "
    "FROM plan, json_array_elements(plan.doc->'movements') AS e RETURNING 1), "
    "outbox_rows AS ("
    "INSERT INTO outbox (topic, key, payload) SELECT e->>0, e->>1, (e->2)::jsonb "
    "FROM plan, json_array_elements(plan.doc->'outbox') AS e RETURNING 1) "
    "SELECT (SELECT count(*) FROM stock_rows), (SELECT count(*) FROM new_reservations), "
    "(SELECT count(*) FROM settled), (SELECT count(*) FROM order_rows), "
    "(SELECT count(*) FROM movement_rows), (SELECT count(*) FROM outbox_rows), "
    "(SELECT count(*) FROM history_rows), "
    # Wakes the relay, in whichever process it runs, when this transaction commits (a
    # notification is delivered at commit, and not at all on rollback).
    f"(SELECT pg_notify('{OUTBOX_CHANNEL}', '') WHERE EXISTS (SELECT FROM outbox_rows))"
)


async def lock_orders(conn: AsyncConnection, order_ids: Sequence[str]) -> None:
    if order_ids:
        await conn.execute(LOCK_ORDERS, {"ids": _json(list(order_ids))})


async def claim_events(
    conn: AsyncConnection, events: Sequence[tuple[str, str, str | None]]
) -> set[tuple[str, str]]:
    """Record (topic, event_id, order_id) as processed; returns the ones not seen before."""
    if not events:
        return set()
    result = await conn.execute(CLAIM_EVENTS, {"events": _json(list(events))})
    return {(row.topic, row.event_id) for row in result}


async def load_orders(conn: AsyncConnection, order_ids: Sequence[str]) -> dict[str, OrderRow]:
    if not order_ids:
        return {}
    result = await conn.execute(LOAD_ORDERS, {"ids": _json(list(order_ids))})
    return {
        row.order_id: OrderRow(
            order_id=row.order_id,
            state=OrderState(row.state),
            items=tuple(item_of(raw) for raw in row.items),
            ttl_seconds=row.ttl_seconds,
            expires_at=row.expires_at,
            version=row.version,
            last_event_id=row.last_event_id,
            allow_partial=row.allow_partial,
            pruned=row.pruned,
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
        found.setdefault(row.order_id, []).append(reservation_row(row))
    return found


def reservation_row(row: Any) -> ReservationRow:
    """A ``reservations`` row as the domain holds it (every query selects the same columns)."""
    return ReservationRow(
        reservation_id=str(row.id),
        order_id=row.order_id,
        stock_id=str(row.stock_id),
        sku=Sku(row.product_id, row.variant_id),
        warehouse_id=row.warehouse_id,
        quantity=row.quantity,
        status=ReservationStatus(row.status),
        expires_at=row.expires_at,
        backordered=row.backordered,
        created_at=row.created_at,
    )


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
            policy=policy_of(row.safety_stock, row.reorder_point, row.backorder_limit),
            backordered=row.backordered,
        )
        for row in result
    }


def policy_of(safety_stock: int, reorder_point: int | None, backorder_limit: int) -> StockPolicy:
    """A stock row's policy from its columns: the shared default when none is set (most rows),
    so the hot path builds no object for it."""
    if not safety_stock and reorder_point is None and not backorder_limit:
        return DEFAULT_POLICY
    return StockPolicy(safety_stock, reorder_point, backorder_limit)


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
    new_ids = {r.reservation_id for r in plan.new_reservations}
    # A reservation made and settled in the same batch (created and paid or cancelled events
    # of one order in one batch) is inserted with its final status: the CTEs of WRITE_PLAN
    # share one snapshot, so the "settled" UPDATE cannot see a row inserted beside it.
    final = plan.reservation_status
    # a line filled in the batch that made it is inserted filled, for the same reason
    fills = plan.backorder_fills
    iso = IsoFormats()  # a batch's reservations mostly share one expiry time
    # Statuses and states go in as the enum members themselves: they are StrEnums, which JSON
    # encodes as their values, and reading ``.value`` costs more than the encoding.
    # The policy columns are written from the row, always: a SetStockPolicy changes a row's
    # policy the way an UpdateStock changes its levels.
    document = {
        "stocks": [
            (
                r.stock_id,
                r.levels.available,
                r.levels.reserved,
                r.levels.total,
                r.version,
                r.policy.safety_stock,
                r.policy.reorder_point,
                r.policy.backorder_limit,
                r.backordered,
            )
            for r in (change.row for change in plan.stock_changes.values())
        ],
        "reservations": [
            (
                r.reservation_id,
                r.order_id,
                r.stock_id,
                r.sku.product_id,
                r.sku.variant_id,
                r.warehouse_id,
                r.quantity,
                final.get(r.reservation_id, r.status),
                iso(r.expires_at),
                fills.get(r.reservation_id, r.backordered) if fills else r.backordered,
            )
            for r in plan.new_reservations
        ],
        "settled": _settled(final, fills, new_ids),
        "orders": [
            (
                o.order_id,
                o.state,
                [_item_json(i) for i in o.items],
                o.ttl_seconds,
                iso(o.expires_at) if o.expires_at else None,
                o.version,
                o.last_event_id,
                o.allow_partial,
            )
            for o in plan.orders.values()
        ],
        "history": [
            (t.order_id, t.from_state, t.to_state, t.published, t.cause) for t in plan.transitions
        ],
        "movements": [
            (
                m.stock_id,
                m.sku.product_id,
                m.sku.variant_id,
                m.warehouse_id,
                m.operation,
                m.quantity,
                m.after.available,
                m.after.reserved,
                m.after.total,
                m.reason,
                m.order_id,
                m.actor,
            )
            for m in plan.movements
        ],
        "outbox": outbox,
    }
    await conn.execute(WRITE_PLAN, {"plan": _json(document)})


def _settled(
    statuses: dict[str, ReservationStatus], fills: dict[str, int], new_ids: set[str]
) -> list[tuple[str, ReservationStatus | None, int | None]]:
    """(id, new status or None, units still backordered or None) per existing reservation."""
    if not fills:  # the common case: no backorder filled
        return [(rid, status, None) for rid, status in statuses.items() if rid not in new_ids]
    return [
        (rid, statuses.get(rid), fills.get(rid))
        for rid in dict.fromkeys([*statuses, *fills])
        if rid not in new_ids
    ]


# One encoder for every statement (json.dumps builds a new one per call when given options);
# the documents are trees built here, so the check for reference cycles is not needed.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def item_of(raw: dict[str, Any]) -> Item:
    """An item of ``orders.items`` (jsonb), as ``write_plan`` writes it."""
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
