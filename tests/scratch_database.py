"""A scratch database on the test stack's PostgreSQL, for the migration tests: an empty
database of its own, Alembic run against it, rows read back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db.migrate import alembic_config
from db.partitions import is_partition
from db.schema import Base


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """An empty database of its own on the stack's server: (its URL, an engine on it)."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    server = create_async_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    url = make_url(server_url).set(database=name).render_as_string(False)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with server.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield url, engine
    finally:
        await engine.dispose()
        async with server.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await server.dispose()


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    # env.py runs its own event loop: Alembic goes to a thread, as db/migrate.py does it
    run = command.downgrade if down else command.upgrade
    await asyncio.to_thread(run, alembic_config(url), revision)


async def rows(engine: AsyncEngine, sql: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(text(sql))).mappings()]


def schema_diff(connection: Connection) -> list[Any]:
    """What the models (``db/schema.py``) and the migrated database disagree on."""
    context = MigrationContext.configure(
        connection,
        opts={"include_name": lambda name, type_, _: not (type_ == "table" and is_partition(name))},
    )
    return compare_metadata(context, Base.metadata)


# the index revision 0008 drops: the models (at head) lack it, a database before 0008 has it
DROPPED_BY_0008 = "ix_reservations_status_expires_at"


def before_0008(diff: list[Any]) -> list[Any]:
    """``diff`` without the index that revision 0008 drops (a database migrated to before it)."""
    return [d for d in diff if not (d[0] == "remove_index" and d[1].name == DROPPED_BY_0008)]
