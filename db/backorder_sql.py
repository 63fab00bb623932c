"""The open backordered lines a batch may fill, locked: see ``service/domain/policy_effects.py``.

A restock fills lines of orders that are not in the batch, and an order is filled when all of
its backordered lines are. Two batches restocking two rows of one order must not both miss
(or both see) the order's last line: the lines are read ``FOR UPDATE``, in id order so that
two batches never wait on each other crosswise, and a batch that waited reads the lines as
the other one committed them.
"""

from __future__ import annotations

from collections.abc import Sequence

from asyncpg import Connection

from db.ledger import reservation_row
from service.domain.snapshot import ReservationRow

_OPEN = "status IN ('PENDING', 'COMMITTED') AND backordered > 0"

LOCK_OPEN_LINES = (
    "SELECT id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status,"
    " expires_at, backordered, created_at, returned FROM reservations"
    f" WHERE {_OPEN} AND order_id IN (SELECT order_id FROM reservations"
    f"  WHERE stock_id = ANY(CAST($1 AS uuid[])) AND {_OPEN})"
    " ORDER BY id FOR UPDATE"
)


async def lock_open_lines(conn: Connection, stock_ids: Sequence[str]) -> list[ReservationRow]:
    """The open backordered lines on ``stock_ids``, and every other one of their orders,
    oldest first (``created_at``, then id): the fill order. Call it after ``lock_stocks``."""
    if not stock_ids:
        return []
    result = await conn.fetch(LOCK_OPEN_LINES, list(stock_ids))
    lines = [reservation_row(row) for row in result]
    return sorted(lines, key=lambda line: (line.created_at, line.reservation_id))
