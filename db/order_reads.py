"""GetOrder's SQL: an order as the ledger holds it, with its reservation lines and its history.

Read-only: no locks, no writes, so it runs on a replica as well as on the primary. It is one
statement, so the order, its lines and its history come from one snapshot (separate
statements outside a REPEATABLE READ transaction could each see a different commit), in
one round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.ledger import item_of
from service.domain.results import OrderView, ReservationLine, Transition
from service.domain.values import OrderState, ReservationStatus, ResultStatus, Sku

# The lines and the history travel as JSON arrays (positions as read below; the driver decodes
# json, as it does ``items``), aggregated in their order: the lines oldest first (as the engine
# loads them), the history by id.
ORDER_VIEW = text(
    "SELECT o.order_id, o.state, o.items, o.expires_at, o.allow_partial, "
    "(SELECT coalesce(json_agg(json_build_array(r.id, r.product_id, r.variant_id, "
    "r.warehouse_id, r.quantity, r.status, r.backordered) ORDER BY r.created_at, r.id), "
    "'[]') FROM reservations r WHERE r.order_id = o.order_id AND r.deleted_at IS NULL) "
    "AS lines, "
    "(SELECT coalesce(json_agg(json_build_array(h.at, h.from_state, h.to_state, h.published, "
    "h.cause) ORDER BY h.id), '[]') FROM order_history h WHERE h.order_id = o.order_id) "
    "AS history "
    "FROM orders o WHERE o.order_id = :order_id"
)


TOMBSTONE = text("SELECT final_state, pruned_at FROM order_tombstones WHERE order_id = :order_id")


async def load_tombstone(
    conn: AsyncConnection, order_id: str
) -> tuple[OrderState, datetime] | None:
    """A pruned order's final state and when it was pruned, or None."""
    row = (await conn.execute(TOMBSTONE, {"order_id": order_id})).one_or_none()
    return None if row is None else (OrderState(row.final_state), row.pruned_at)


async def load_order_view(conn: AsyncConnection, order_id: str) -> OrderView | None:
    """The order ``order_id`` with its lines (every status) and its history, or None."""
    row = (await conn.execute(ORDER_VIEW, {"order_id": order_id})).one_or_none()
    if row is None:
        return None
    return OrderView(
        order_id=row.order_id,
        state=OrderState(row.state),
        items=tuple(item_of(raw) for raw in row.items),
        reservations=tuple(_line(raw) for raw in row.lines),
        expires_at=row.expires_at,
        allow_partial=row.allow_partial,
        history=tuple(_transition(raw) for raw in row.history),
    )


def _line(raw: list[Any]) -> ReservationLine:
    reservation_id, product_id, variant_id, warehouse_id, quantity, status, backordered = raw
    return ReservationLine(
        reservation_id=str(reservation_id),
        sku=Sku(product_id, variant_id),
        warehouse_id=warehouse_id,
        quantity=int(quantity),
        status=ReservationStatus(status),
        backordered=int(backordered),
    )


def _transition(raw: list[Any]) -> Transition:
    at, from_state, to_state, published, cause = raw
    return Transition(
        # JSON carries the time as ISO 8601 in the session's time zone; the service's are UTC
        at=datetime.fromisoformat(at).astimezone(UTC),
        from_state=OrderState(from_state) if from_state is not None else None,
        to_state=OrderState(to_state),
        published=ResultStatus(published) if published is not None else None,
        cause=cause,
    )
