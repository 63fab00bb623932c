"""The outbox relay's SQL: the advisory lock, unpublished rows in id order, marking, pruning.

Every function takes the relay's own connection (the one that holds the advisory lock) and
commits its statement, so a lost connection means a lost lock and failing statements.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import BigInteger


def advisory_key(name: str) -> int:
    """A stable 63-bit lock key for a name (e.g. the app id), shared by every worker."""
    return zlib.crc32(f"inventory-outbox-relay:{name}".encode()) | (0x5EED << 32)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes  # the JSON text of the payload, ready to publish
    created_at: datetime


_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_UNPUBLISHED = text(
    "SELECT id, topic, key, payload::text AS payload, created_at FROM outbox"
    " WHERE published_at IS NULL ORDER BY id LIMIT :limit"
)
_MARK = text(
    "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY(:ids)"
    " RETURNING topic, extract(epoch FROM (published_at - created_at))::float8 AS latency"
).bindparams(bindparam("ids", type_=ARRAY(BigInteger)))
_PRUNE = text(
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL"
    " AND published_at < now() - make_interval(secs => :seconds) ORDER BY id LIMIT :limit)"
)
_BACKLOG = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")


async def try_lock(conn: AsyncConnection, key: int) -> bool:
    got = (await conn.execute(_TRY_LOCK, {"key": key})).scalar_one()
    await conn.commit()
    return bool(got)


async def unlock(conn: AsyncConnection, key: int) -> None:
    await conn.execute(_UNLOCK, {"key": key})
    await conn.commit()


async def fetch_unpublished(conn: AsyncConnection, limit: int) -> list[OutboxRow]:
    rows = (await conn.execute(_UNPUBLISHED, {"limit": limit})).all()
    await conn.commit()
    return [
        OutboxRow(row.id, row.topic, row.key, row.payload.encode(), row.created_at)
        for row in rows
    ]


async def mark_published(conn: AsyncConnection, ids: Sequence[int]) -> list[tuple[str, float]]:
    """Mark rows published; returns (topic, seconds from commit to publish) per row."""
    if not ids:
        return []
    rows = (await conn.execute(_MARK, {"ids": list(ids)})).all()
    await conn.commit()
    return [(row.topic, float(row.latency)) for row in rows]


async def prune_published(conn: AsyncConnection, older_than_s: float, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows published longer ago than ``older_than_s``."""
    result = await conn.execute(_PRUNE, {"seconds": older_than_s, "limit": limit})
    await conn.commit()
    return int(getattr(result, "rowcount", 0) or 0)


async def backlog(conn: AsyncConnection) -> int:
    count = (await conn.execute(_BACKLOG)).scalar_one()
    await conn.commit()
    return int(count)
