"""The pruner's SQL: one small batch per statement, each its own transaction (autocommit).

Every batch selects at most ``limit`` rows ``FOR UPDATE SKIP LOCKED`` (a row the engine holds
is left for the next round) and the caller's connection has a short ``lock_timeout``, so a
batch never queues behind the engine, and the engine waits on a batch at most for its length.

A finished order is pruned under the engine's own lock on its id (the transaction-scoped
advisory lock of ``db/ledger.py`` LOCK_ORDERS), taken with ``pg_try_advisory_xact_lock``:
an order a batch of the engine is reading or writing is skipped. Its reservations and history
go with it, and a tombstone takes its place in the same statement.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import asyncpg

from db.partitions import VACUUM_SCALE_FACTOR
from db.schema import FINISHED_SQL

TABLES = (
    "processed_events",
    "orders",
    "reservations",
    "order_history",
    "order_tombstones",
    "stock_movements",
    "outbox",
)


def advisory_key(name: str) -> int:
    """The session lock that makes one worker (of an app id) the pruner."""
    return zlib.crc32(f"inventory-pruner:{name}".encode()) | (0x9E0E << 32)


# An order that still owes backordered units keeps everything: its lines are in stocks.backordered
_OWES_UNITS = (
    "EXISTS (SELECT FROM reservations r WHERE r.order_id = {order}.order_id "
    "AND r.backordered > 0 AND r.deleted_at IS NULL)"
)

# Dedup rows of an order the ledger still holds unfinished (or owing units) are kept: only
# rows with no order, or whose order is finished or gone, go once older than the window.
_PRUNE_EVENTS = (
    "DELETE FROM processed_events WHERE ctid IN ("
    "SELECT p.ctid FROM processed_events p "
    "WHERE p.processed_at < now() - make_interval(secs => $1) "
    "AND NOT EXISTS (SELECT FROM orders o WHERE o.order_id = p.order_id "
    f"AND (o.state NOT IN ({FINISHED_SQL}) OR {_OWES_UNITS.format(order='o')})) "
    "ORDER BY p.processed_at LIMIT $2 FOR UPDATE OF p SKIP LOCKED)"
)

_PRUNE_ORDERS = (
    "WITH candidates AS MATERIALIZED ("
    "SELECT o.order_id, o.state FROM orders o "
    f"WHERE o.state IN ({FINISHED_SQL}) AND o.updated_at < now() - make_interval(secs => $1) "
    f"AND NOT {_OWES_UNITS.format(order='o')} "
    "ORDER BY o.updated_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED), "
    # the engine's lock on the order id, not waited for: a busy order waits for a next round
    "doomed AS MATERIALIZED (SELECT order_id, state FROM candidates "
    "WHERE pg_try_advisory_xact_lock(hashtextextended(order_id, 0))), "
    "tombstones AS (INSERT INTO order_tombstones (order_id, final_state) "
    "SELECT order_id, state FROM doomed ON CONFLICT (order_id) DO UPDATE "
    "SET final_state = excluded.final_state, pruned_at = now() RETURNING 1), "
    "lines AS (DELETE FROM reservations r USING doomed d WHERE r.order_id = d.order_id "
    "RETURNING 1), "
    "steps AS (DELETE FROM order_history h USING doomed d WHERE h.order_id = d.order_id "
    "RETURNING 1), "
    "gone AS (DELETE FROM orders o USING doomed d WHERE o.order_id = d.order_id RETURNING 1) "
    "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM lines), "
    "(SELECT count(*) FROM steps), (SELECT count(*) FROM tombstones)"
)

_PRUNE_TOMBSTONES = (
    "DELETE FROM order_tombstones WHERE order_id IN ("
    "SELECT order_id FROM order_tombstones "
    "WHERE pruned_at < now() - make_interval(secs => $1) "
    "ORDER BY pruned_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
)

# Rows older than the horizon, but never a stock's last movement before it: GetStock as_of at
# any instant after the horizon needs the row's last movement by then, and the invariant
# check's replay starts from it. (Whole months go in db/partitions.py, which carries those
# rows forward.) The primary key, not ctid: a ctid is unique within one partition only.
_PRUNE_MOVEMENTS = (
    "DELETE FROM stock_movements WHERE (id, created_at) IN ("
    "SELECT m.id, m.created_at FROM stock_movements m WHERE m.created_at < $1 "
    "AND EXISTS (SELECT FROM stock_movements n WHERE n.stock_id = m.stock_id AND n.id > m.id "
    "AND n.created_at < $1) "
    "LIMIT $2 FOR UPDATE OF m SKIP LOCKED)"
)

# The age of the oldest row each retention removes (what the alert watches).
_OLDEST = {
    "processed_events": "SELECT min(processed_at) FROM processed_events",
    "orders": f"SELECT min(updated_at) FROM orders WHERE state IN ({FINISHED_SQL})",
    "order_tombstones": "SELECT min(pruned_at) FROM order_tombstones",
    # ids grow with time: the first row by the primary key is the oldest (within a batch)
    "stock_movements": "SELECT created_at FROM stock_movements ORDER BY id LIMIT 1",
    "outbox": "SELECT min(published_at) FROM outbox",
}


# autovacuum's own rule for these tables (dead rows beyond 5 % of the live ones, revision
# 0007), checked at the pruner's cadence: with short retentions autovacuum's one visit a minute
# (autovacuum_naptime) leaves a table with minutes of dead rows, and their space is reused
# only after a vacuum.
_CHURNED = (
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
    "AND (relname = ANY($1::text[]) OR relname LIKE 'stock\\_movements\\_%') "
    "AND n_dead_tup > 1000 AND n_dead_tup > $2 * n_live_tup ORDER BY relname"
)
VACUUM_TIMEOUT = "10min"


@dataclass(frozen=True, slots=True)
class PrunedOrders:
    orders: int
    reservations: int
    history: int
    tombstones: int


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def prune_events(conn: asyncpg.Connection, window_s: float, limit: int) -> int:
    return _deleted(await conn.execute(_PRUNE_EVENTS, window_s, limit))


async def prune_orders(conn: asyncpg.Connection, retention_s: float, limit: int) -> PrunedOrders:
    row = await conn.fetchrow(_PRUNE_ORDERS, retention_s, limit)
    assert row is not None
    return PrunedOrders(row[0], row[1], row[2], row[3])


async def prune_tombstones(conn: asyncpg.Connection, retention_s: float, limit: int) -> int:
    return _deleted(await conn.execute(_PRUNE_TOMBSTONES, retention_s, limit))


async def prune_movements(conn: asyncpg.Connection, horizon: object, limit: int) -> int:
    return _deleted(await conn.execute(_PRUNE_MOVEMENTS, horizon, limit))


async def oldest_ages(conn: asyncpg.Connection) -> dict[str, float | None]:
    """Seconds since the oldest row of each pruned table was written (None: empty)."""
    ages: dict[str, float | None] = {}
    for table, oldest in _OLDEST.items():
        ages[table] = await conn.fetchval(f"SELECT extract(epoch FROM now() - ({oldest}))::float8")
    return ages


async def vacuum_churned(conn: asyncpg.Connection) -> list[str]:
    """VACUUM the pruned tables with more dead rows than autovacuum lets stand; their names.
    VACUUM takes no lock that the engine's statements wait on (SHARE UPDATE EXCLUSIVE), and
    without TRUNCATE none for giving the table's end back."""
    names = [row[0] for row in await conn.fetch(_CHURNED, list(TABLES), VACUUM_SCALE_FACTOR)]
    if names:
        await conn.execute(f"SET statement_timeout = '{VACUUM_TIMEOUT}'")
        try:
            for name in names:
                await conn.execute(f'VACUUM (SKIP_LOCKED, TRUNCATE false) "{name}"')
        finally:
            await conn.execute("RESET statement_timeout")
    return names


def _deleted(status: str) -> int:
    return int(status.split()[-1]) if status.startswith("DELETE") else 0
