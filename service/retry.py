"""Retrying until it works or the process stops: one helper for every loop that backs off.

Built on tenacity (exponential wait, retry predicate, logging before each wait); what it
adds is the stop: the wait between attempts ends as soon as ``stopping`` is set, and the
retry then raises ``Stopping`` so the caller gives its work up (unacknowledged, for
redelivery) instead of finishing a sleep.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential


class Stopping(Exception):
    """The process began stopping while an operation waited to be retried."""


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.05
    max_s: float = 5.0


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stopping`` is set first; True when it was set."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def retrying(
    stopping: asyncio.Event,
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    what: str,
    log: logging.Logger,
    backoff: Backoff = Backoff(),
) -> AsyncRetrying:
    """Attempts of one operation: ``async for attempt in retrying(...): with attempt: ...``.

    Exceptions of ``retry_on`` are logged (WARNING, one line) and retried with a doubling
    wait; any other exception propagates at once; ``Stopping`` ends the retries.
    """

    async def sleep(seconds: float) -> None:
        if await pause(stopping, seconds):
            raise Stopping(what)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("%s failed, retrying in %.2fs: %s", what, wait, error)

    return AsyncRetrying(
        sleep=sleep,
        wait=wait_exponential(multiplier=backoff.first_s, min=backoff.first_s, max=backoff.max_s),
        retry=retry_if_exception_type(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )
