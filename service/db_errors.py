"""Sorting database failures: retry the batch, report the database unavailable, or a bug."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.domain.errors import Unavailable

R = TypeVar("R")

# SQLSTATE classes: 08 connection exception, 57P0x operator intervention (shutdown, crash),
# 53 insufficient resources. 40001 serialization, 40P01 deadlock, 55P03 lock timeout and
# 57014 statement timeout are conflicts: the same batch may well succeed when run again.
# asyncpg's InternalClientError is a connection in a state the driver did not expect: the
# FATAL of a server shutting down read while the connection was idle in the pool, before its
# end of file (``tests/chaos/test_faults.py``, PostgreSQL stopped then started).
_UNAVAILABLE_PREFIXES = ("08", "57P", "53")
_CONFLICT_STATES = {"40001", "40P01", "55P03", "57014"}


class Failure(Enum):
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    BUG = "bug"


def classify(error: BaseException) -> Failure:
    for cause in chain(error):
        if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
            return Failure.UNAVAILABLE
        if isinstance(cause, sa_exc.TimeoutError):  # the pool had no connection to give
            return Failure.UNAVAILABLE
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str):
            if state in _CONFLICT_STATES:
                return Failure.CONFLICT
            if state.startswith(_UNAVAILABLE_PREFIXES):
                return Failure.UNAVAILABLE
        if isinstance(
            cause,
            OSError
            | TimeoutError
            | ConnectionError
            | asyncpg.InterfaceError
            | asyncpg.InternalClientError
            | asyncpg.PostgresConnectionError,
        ):
            return Failure.UNAVAILABLE
    return Failure.BUG


def chain(error: BaseException, *, implicit: bool = False) -> list[BaseException]:
    """The error, then what caused it: a driver's ``orig`` first, else ``__cause__`` (and,
    with ``implicit``, the exception being handled when it was raised)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            current = orig
        else:
            current = current.__cause__ or (current.__context__ if implicit else None)
    return seen


async def read_retrying_once(db: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[R]]) -> R:
    """A read on a pooled connection, tried again once on a fresh one: a connection that died
    with a restarted server fails its first use. A bug propagates; a second failure is
    ``Unavailable``."""
    for attempt in (1, 2):
        try:
            async with db.connect() as conn:
                return await read(conn)
        except Exception as error:
            if classify(error) is Failure.BUG:
                raise
            if attempt == 2:
                raise Unavailable("database unavailable") from error
    raise AssertionError("unreachable")
