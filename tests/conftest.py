"""Shared fixtures: one embedded stack per test session, migrated once, cleaned per test.

- ``stack``: the embedded broker, PostgreSQL and Redis on free ports in a temporary
  directory (started on first use, so unit tests never start it). A component whose URL is
  set in the environment (INVENTORY_DATABASE_URL, INVENTORY_REDIS_URL,
  INVENTORY_KAFKA_BOOTSTRAP) is used instead of started; the test run then TRUNCATEs that
  database and flushes that Redis database.
- ``settings``: ``Settings`` pointed at the stack, with the migrations applied.
- ``db_engine``: an AsyncEngine; ``container``: the service's parts from ``bootstrap.build``.
- Isolation: before each test under tests/integration or tests/e2e (or marked ``stack``)
  that uses the stack, every table but ``alembic_version`` is truncated in one statement,
  the rows the migrations created (the default warehouse) are put back, and Redis is
  flushed. Kafka cannot be reset: use unique topics or consumer groups per test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from service.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from service.bootstrap import Container
    from service.devtools.stack import EmbeddedStack

TESTS = Path(__file__).parent
ISOLATED_DIRS = (TESTS / "integration", TESTS / "e2e")
KEEP_DATA_ENV = "INVENTORY_TEST_KEEP_STACK_DATA"  # set to keep the stack's data and logs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack() -> Iterator[EmbeddedStack]:
    from service.devtools.stack import EmbeddedStack

    data_dir = Path(tempfile.mkdtemp(prefix="inventory-test-stack-"))
    with EmbeddedStack.from_env(data_dir) as running:
        yield running
    if not os.environ.get(KEEP_DATA_ENV):
        shutil.rmtree(data_dir, ignore_errors=True)


class MigratedDatabase:
    """What the migrations left in the database, to restore after each truncation."""

    def __init__(self, tables: list[str], warehouses: list[dict[str, Any]]) -> None:
        self.tables = tables
        self.warehouses = warehouses


@pytest.fixture(scope="session")
async def migrated(stack: EmbeddedStack) -> MigratedDatabase:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from db.migrate import upgrade_async

    settings = Settings(**stack.overrides)
    await upgrade_async(settings.database_url, settings.default_warehouse_id)
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            tables = await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                    "AND tablename <> 'alembic_version' ORDER BY tablename"
                )
            )
            table_names = list(tables.scalars())
            warehouses = await conn.execute(
                text("SELECT id, name, priority, active FROM warehouses ORDER BY id")
            )
            rows = [dict(row) for row in warehouses.mappings()]
    finally:
        await engine.dispose()
    return MigratedDatabase(table_names, rows)


@pytest.fixture
def settings(stack: EmbeddedStack, migrated: MigratedDatabase) -> Settings:
    return Settings(**stack.overrides)


@pytest.fixture
async def db_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    from db.session import create_engine

    engine = create_engine(settings.database())
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    from service.bootstrap import build  # imported here: unit tests must not need the engine

    async with build(settings) as built:
        yield built


# --- per-test isolation ------------------------------------------------------------------


def _wants_isolation(request: pytest.FixtureRequest) -> bool:
    if "stack" not in request.fixturenames:
        return False
    path = Path(str(request.node.path))
    in_isolated_dir = any(path.is_relative_to(d) for d in ISOLATED_DIRS)
    return in_isolated_dir or request.node.get_closest_marker("stack") is not None


@pytest.fixture(autouse=True)
def _isolate(request: pytest.FixtureRequest) -> None:
    if _wants_isolation(request):
        request.getfixturevalue("clean_state")


@pytest.fixture
async def clean_state(stack: EmbeddedStack, migrated: MigratedDatabase) -> None:
    """Empty every table (one TRUNCATE), restore the migrations' rows, flush Redis."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    settings = Settings(**stack.overrides)
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{table}"' for table in migrated.tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            if migrated.warehouses:
                await conn.execute(
                    text(
                        "INSERT INTO warehouses (id, name, priority, active) "
                        "VALUES (:id, :name, :priority, :active)"
                    ),
                    migrated.warehouses,
                )
    finally:
        await engine.dispose()
    await _flush_redis(settings.redis_url)


async def _flush_redis(url: str) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError, TimeoutError

    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.flushdb()
    except (ConnectionError, TimeoutError):
        pass  # a fault test may have left it down; the cache must cope with that anyway
    finally:
        await client.aclose()
