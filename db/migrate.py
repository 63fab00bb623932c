"""Alembic, driven from code: ``upgrade`` at start-up and by ``inventory migrate``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, default_warehouse_id: str = "default") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["default_warehouse_id"] = default_warehouse_id
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://")).get_current_head()


def upgrade(database_url: str, default_warehouse_id: str = "default") -> None:
    """Apply every migration up to head (blocking; call from a thread in async code)."""
    command.upgrade(alembic_config(database_url, default_warehouse_id), "head")


async def upgrade_async(database_url: str, default_warehouse_id: str = "default") -> None:
    await asyncio.to_thread(upgrade, database_url, default_warehouse_id)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


async def at_head(engine: AsyncEngine) -> bool:
    return await current_revision(engine) == head_revision()
