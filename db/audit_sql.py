"""The SQL of ``inventory audit``: which order events the ledger processed, and order states.

Read-only. Keys go in as one JSON document per chunk (``json_array_elements``), like the
engine's statements in ``db/ledger.py``; a chunk is one round trip on the primary keys.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

CHUNK = 5_000

PROCESSED = text(
    "SELECT p.topic, p.event_id FROM processed_events AS p "
    "JOIN (SELECT e->>0 AS topic, e->>1 AS event_id "
    "FROM json_array_elements(CAST(:keys AS json)) AS e) AS k "
    "ON p.topic = k.topic AND p.event_id = k.event_id"
)

# An order pruned by retention counts as its final state (its tombstone's): pruning is not a
# loss. A live row wins over a tombstone.
ORDER_STATES = text(
    "WITH wanted AS (SELECT json_array_elements_text(CAST(:ids AS json)) AS order_id) "
    "SELECT order_id, state FROM orders WHERE order_id IN (SELECT order_id FROM wanted) "
    "UNION ALL SELECT t.order_id, t.final_state FROM order_tombstones t "
    "WHERE t.order_id IN (SELECT order_id FROM wanted) "
    "AND NOT EXISTS (SELECT FROM orders o WHERE o.order_id = t.order_id)"
)


async def processed(
    db: AsyncEngine | AsyncConnection, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The (topic, event_id) keys of ``keys`` that ``processed_events`` holds."""
    found: set[tuple[str, str]] = set()
    async with _connection(db) as conn:
        for start in range(0, len(keys), CHUNK):
            chunk = [list(key) for key in keys[start : start + CHUNK]]
            result = await conn.execute(PROCESSED, {"keys": _json(chunk)})
            found.update((row.topic, row.event_id) for row in result)
    return found


async def order_states(
    db: AsyncEngine | AsyncConnection, order_ids: Sequence[str]
) -> dict[str, str]:
    """``orders.state`` by order id, for the ids that have a row or a tombstone."""
    states: dict[str, str] = {}
    async with _connection(db) as conn:
        for start in range(0, len(order_ids), CHUNK):
            chunk = list(order_ids[start : start + CHUNK])
            result = await conn.execute(ORDER_STATES, {"ids": _json(chunk)})
            states.update((row.order_id, row.state) for row in result)
    return states


async def ping(db: AsyncEngine) -> None:
    async with db.connect() as conn:
        await conn.execute(text("SELECT 1"))


@asynccontextmanager
async def _connection(db: AsyncEngine | AsyncConnection) -> AsyncIterator[AsyncConnection]:
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.connect() as conn:
            yield conn


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
