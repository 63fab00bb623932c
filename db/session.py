"""Connections to PostgreSQL, built from plain values (never at import time).

``db`` knows nothing of the service's settings: the composition root turns ``Settings`` into a
``Database`` (``Settings.database()``) and passes it in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


@dataclass(frozen=True, slots=True)
class Database:
    url: str  # a SQLAlchemy URL with the asyncpg driver: postgresql+asyncpg://...
    application_name: str
    pool_size: int = 10
    max_overflow: int = 5
    connect_timeout_s: float = 3.0
    statement_timeout_ms: int = 5_000
    lock_timeout_ms: int = 2_000

    def named(self, application_name: str) -> Database:
        return replace(self, application_name=application_name)

    @property
    def server_settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(self.statement_timeout_ms),
            "lock_timeout": str(self.lock_timeout_ms),
            "application_name": self.application_name,
        }


def create_engine(database: Database) -> AsyncEngine:
    return create_async_engine(
        database.url,
        pool_size=database.pool_size,
        max_overflow=database.max_overflow,
        # No pre-ping: it costs a round trip per checkout. A connection that died with the
        # server fails its first use; the engine and the reads retry once on a fresh one.
        pool_pre_ping=False,
        connect_args={
            "timeout": database.connect_timeout_s,
            "server_settings": database.server_settings,
        },
    )


# Every statement of a batch finds its rows by a key (an order id, a SKU, an event's key).
# asyncpg prepares each statement once per connection, and PostgreSQL keeps a generic plan
# after five runs: one planned while a table was nearly empty (a new database, the first
# minute after a deploy) reads the whole table, and keeps reading it as the table grows until
# autovacuum's next ANALYZE replans it. Measured on the gRPC bench: a scan of ``orders`` per
# batch, PostgreSQL's CPU per order 480 µs against 210 without. So a batch's transaction turns
# sequential scans off, for itself only (SET LOCAL: the pool's readers keep them), in the
# BEGIN's own round trip (the simple protocol takes both statements at once).
BEGIN_BATCH = "BEGIN; SET LOCAL enable_seqscan = off"


@asynccontextmanager
async def snapshot(db: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction whose reads all see one snapshot (REPEATABLE READ), for whatever reads
    several tables and compares them while others write: under READ COMMITTED each statement
    reads its own, and a commit between two of them (the pruner's, say) shows half of it."""
    async with db.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


@asynccontextmanager
async def driver_transaction(db: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on the asyncpg connection of a pooled one (the engine's batches,
    ``db/ledger.py`` says why): ``BEGIN_BATCH``, committed when the block ends, rolled back
    if it raises.

    SQLAlchemy starts no transaction of its own on the connection (it would at its first
    ``execute``), so returning it to the pool costs nothing. What SQLAlchemy would do on a
    failure, this does: a lost connection (a restarted server) empties the pool, whose other
    connections are as old and likely as dead; one left in doubt (cancelled mid-statement, a
    driver error) is discarded alone. An error the server answered leaves it healthy.
    """
    async with db.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, asyncpg.Connection)
        try:
            try:
                await raw.execute(BEGIN_BATCH)
                yield raw
            except BaseException:
                if not raw.is_closed():
                    await raw.execute("ROLLBACK")
                raise
            await raw.execute("COMMIT")
        except BaseException as error:
            if raw.is_closed() or isinstance(error, _LOST):
                await conn.invalidate()
                await db.dispose()
            elif isinstance(error, _IN_DOUBT):
                await conn.invalidate()
            raise


_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError)
_IN_DOUBT = (
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # service/db_errors.py says when
    asyncio.CancelledError,
)


async def connect(database: Database) -> asyncpg.Connection:
    """A connection outside the pool (the SQLAlchemy URL, minus the driver name)."""
    url = make_url(database.url).set(drivername="postgresql")
    return await asyncpg.connect(
        url.render_as_string(hide_password=False),
        timeout=database.connect_timeout_s,
        server_settings=database.server_settings,
    )
