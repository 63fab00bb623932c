"""The outbox relay's SQL: the advisory lock, unpublished rows in id order, marking; and the
pruner's deletion of published rows.

The relay runs on a dedicated asyncpg connection, outside the pool: it holds the session
advisory lock for as long as it publishes, and a lost connection means a lost lock and
failing statements. Each statement commits on its own (autocommit).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

# Every transaction that writes outbox rows notifies this channel (db/ledger.py WRITE_PLAN);
# the relay listens on it, so a commit in any process reaches Kafka without waiting for a poll.
OUTBOX_CHANNEL = "inventory_outbox"


def advisory_key(name: str) -> int:
    """A stable 63-bit lock key for a name (e.g. the app id), shared by every worker."""
    return zlib.crc32(f"inventory-outbox-relay:{name}".encode()) | (0x5EED << 32)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    payload: bytes  # the JSON text of the payload, ready to publish


_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_UNLOCK = "SELECT pg_advisory_unlock($1)"
_UNPUBLISHED = (
    "SELECT id, topic, key, payload::text FROM outbox"
    " WHERE published_at IS NULL ORDER BY id LIMIT $1"
)
_MARK = (
    "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])"
    " RETURNING topic, extract(epoch FROM (published_at - created_at))::float8"
)
_PRUNE = (
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT NULL"
    " AND published_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2"
    " FOR UPDATE SKIP LOCKED)"
)
_BACKLOG = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


async def listen(conn: asyncpg.Connection, wake: Callable[[], None]) -> None:
    """Call ``wake`` whenever a transaction that wrote outbox rows commits."""
    await conn.add_listener(OUTBOX_CHANNEL, lambda *_: wake())


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    return bool(await conn.fetchval(_TRY_LOCK, key))


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.fetchval(_UNLOCK, key)


async def fetch_unpublished(conn: asyncpg.Connection, limit: int) -> list[OutboxRow]:
    rows = await conn.fetch(_UNPUBLISHED, limit)
    return [OutboxRow(r[0], r[1], r[2], r[3].encode()) for r in rows]


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int]) -> list[tuple[str, float]]:
    """Mark rows published; returns (topic, seconds from commit to publish) per row."""
    if not ids:
        return []
    rows = await conn.fetch(_MARK, list(ids))
    return [(r[0], r[1]) for r in rows]


async def prune_published(
    conn: asyncpg.Connection, older_than_s: float, limit: int = 10_000
) -> int:
    """Delete up to ``limit`` rows published longer ago than ``older_than_s``."""
    status = await conn.execute(_PRUNE, float(older_than_s), limit)
    return int(status.split()[-1]) if status.startswith("DELETE") else 0


async def backlog(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(_BACKLOG))
