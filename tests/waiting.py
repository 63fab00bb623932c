"""Waiting on a condition: the one polling loop of the tests.

A test waits for what it needs (a row, a record, a counter) rather than for a while; the bound
``within_s`` only ends a broken test, it is never a figure under test.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], Awaitable[T] | T],
    *,
    within_s: float,
    what: str,
    every_s: float = 0.05,
    alive: Iterable[Callable[[], object]] = (),
    ignoring: tuple[type[BaseException], ...] = (),
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.

    - ``alive``: checks run every round, each raising when what it watches (a process) died,
      so a test fails at once instead of after ``within_s``.
    - ``ignoring``: errors of the predicate that mean "not yet" (a server still starting).
    - ``diagnose``: what to add to the TimeoutError (a log tail), computed only on failure.
    """
    checks = list(alive)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            found = predicate()
            if inspect.isawaitable(found):
                found = await found
        except ignoring:
            found = None
        if found:
            return found  # type: ignore[return-value]
        for check in checks:
            check()
        if loop.time() > deadline:
            detail = f": {diagnose()}" if diagnose is not None else ""
            raise TimeoutError(f"not within {within_s:g} s: {what}{detail}")
        await asyncio.sleep(every_s)
