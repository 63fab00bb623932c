"""The expiry sweeper's SQL: a round lock, and due orders picked with FOR UPDATE SKIP LOCKED.

The sweeper only *finds* due orders; the engine expires them in its own transactions (it
re-checks, under its locks, that each order is still RESERVED and due). So the row locks taken
here end when the picking transaction commits, before the engine runs: holding them would
make the engine's UPDATE of the same rows wait for the sweeper, which waits for the engine.
SKIP LOCKED passes over orders that an engine batch is writing at that moment (they are being
settled; a later round sees them if they are still due) instead of queueing behind it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# keyset pagination (expires_at, order_id): a round visits each due order at most once, even
# if the engine leaves one RESERVED (its clock says not yet due)
DUE_ORDERS = text(
    "SELECT order_id, expires_at FROM orders "
    "WHERE state = 'RESERVED' "
    "AND expires_at <= now() - make_interval(secs => CAST(:grace_s AS float8)) "
    "AND (expires_at, order_id) > (CAST(:after_at AS timestamptz), CAST(:after_id AS text)) "
    "ORDER BY expires_at, order_id LIMIT :limit "
    "FOR UPDATE SKIP LOCKED"
)

TRY_ROUND_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")

BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DueOrder:
    order_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the last page of due orders ended."""

    expires_at: datetime = BEGINNING
    order_id: str = ""


def round_lock_key(app_id: str) -> int:
    """A stable 63-bit advisory lock key per app id, shared by every worker's sweeper."""
    return zlib.crc32(f"inventory-expiry-sweeper:{app_id}".encode()) | (0x5EEF << 32)


async def try_round_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the sweep-round lock for the rest of ``conn``'s transaction, if nobody holds it."""
    return bool((await conn.execute(TRY_ROUND_LOCK, {"key": key})).scalar_one())


async def due_orders(
    conn: AsyncConnection, *, grace_s: float, limit: int, after: Cursor
) -> list[DueOrder]:
    """RESERVED orders due at least ``grace_s`` ago, after ``after``, oldest first.

    Run it in a transaction of its own and commit before acting on the result.
    """
    result = await conn.execute(
        DUE_ORDERS,
        {
            "grace_s": float(grace_s),
            "after_at": after.expires_at,
            "after_id": after.order_id,
            "limit": limit,
        },
    )
    return [DueOrder(row.order_id, row.expires_at) for row in result]
