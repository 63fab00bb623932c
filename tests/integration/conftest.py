"""Fixtures shared by the integration tests (the stack's own are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.scratch_database import scratch_database


@pytest.fixture
async def scratch(settings: Any) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """An empty database of its own, for a migration test: (its URL, an engine on it)."""
    async with scratch_database(settings.database_url) as made:
        yield made
