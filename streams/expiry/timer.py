"""The timer: each tick, expires the schedule's due window through the engine.

It takes the entries now due from the index (``schedule.py``), up to ``EXPIRE_CHUNK`` per
engine call. The engine expires only orders still RESERVED whose ``expires_at`` has passed, so
a commit that landed first always wins. An entry whose order is no longer RESERVED is
forgotten (deleted from the table); one the engine left RESERVED (not yet due by its clock)
waits again; a database failure puts the window back with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from service import metrics
from service.domain.errors import Unavailable
from service.domain.results import OrderResult
from service.domain.values import OrderState
from service.expiry_port import Expirer, record_expired
from service.retry import pause
from streams.expiry.schedule import Entry, ExpirySchedule

log = logging.getLogger(__name__)

EXPIRE_CHUNK = 2_000  # order ids per engine call (the engine batches them further)
RETRY_AFTER_S = 1.0  # an order the engine answered nothing for (an error) is tried again
MAX_BACKOFF_S = 5.0
SUMMARY_INTERVAL_S = 10.0


class ExpiryTimer:
    """Each tick, expires the schedule's due window through the engine (no Faust in here)."""

    def __init__(
        self,
        schedule: ExpirySchedule,
        engine: Expirer,
        *,
        forget: Callable[[list[Entry]], Awaitable[None]],
        tick_s: float,
        on_tick: Callable[[], Awaitable[None]] | None = None,
        chunk: int = EXPIRE_CHUNK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._schedule = schedule
        self._engine = engine
        self._forget = forget  # delete settled orders' table entries
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._chunk = max(chunk, 1)
        self._clock = clock
        self._backoff_s = 0.0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.expired = 0  # since start
        self._reported = 0
        self._summary_at = time.monotonic() + SUMMARY_INTERVAL_S

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="expiry-timer")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let the engine call in flight finish (bounded), then stop."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        self._summary_at = time.monotonic() + SUMMARY_INTERVAL_S
        while not self._stopping.is_set():
            try:
                await self.tick()
            except Exception:  # a bug in a tick must not end expiry for good
                metrics.EXPIRY_FAILURES.labels(via="timer", reason="internal").inc()
                log.exception("expiry tick failed")
            await pause(self._stopping, self._tick_s)
        self._summary()

    async def tick(self) -> int:
        """Expire everything due, a chunk at a time, until nothing is; returns how many.

        Each chunk takes what is due at that moment, so under a steady stream of deadlines
        the tick goes on until it has caught up.
        """
        expired = 0
        while not self._stopping.is_set():
            due = self._schedule.take_due(self._clock(), self._chunk)
            if not due:
                break
            done = await self._expire(due)
            if done is None:
                break  # failed; the window is back in the schedule with a delay
            expired += done
            self._housekeeping()
        self._housekeeping()
        if self._on_tick is not None:
            await self._on_tick()
        return expired

    def _housekeeping(self) -> None:
        metrics.EXPIRY_SCHEDULED.set(len(self._schedule))
        if time.monotonic() >= self._summary_at:
            self._summary()
            self._summary_at = time.monotonic() + SUMMARY_INTERVAL_S

    async def _expire(self, due: list[Entry]) -> int | None:
        try:
            results = await self._engine.expire([entry.order_id for entry in due])
        except Unavailable as exc:
            self._put_back(due, "unavailable", exc)
            return None
        except Exception as exc:
            log.exception("expiring %d orders failed", len(due))
            self._put_back(due, "internal", exc)
            return None
        self._backoff_s = 0.0
        now = self._clock()
        expired = record_expired(results, "timer", now)
        self.expired += expired
        settled = self._settle(due, {result.order_id: result for result in results}, now)
        if settled:
            try:
                await self._forget(settled)
            except Exception:  # the entries come back after a restart, and expire as no-ops
                metrics.EXPIRY_FAILURES.labels(via="timer", reason="table").inc()
                log.exception("could not delete %d settled entries from the table", len(settled))
        return expired

    def _settle(self, due: list[Entry], results: dict[str, OrderResult], now: float) -> list[Entry]:
        """Put back what is still pending; the settled entries, whose table rows can go."""
        schedule = self._schedule
        settled: list[Entry] = []
        missing = 0
        for entry in due:
            result = results.get(entry.order_id)
            if result is None:  # the engine returned an error for this one
                missing += 1
                schedule.retry(entry.order_id, now + RETRY_AFTER_S)
            elif result.state is OrderState.RESERVED:  # not due yet by the engine's clock
                at = result.expires_at.timestamp() if result.expires_at else now
                schedule.retry(entry.order_id, max(at, now + self._tick_s))
            else:
                done = schedule.done(entry.order_id)
                if done is not None:  # not replaced by a newer RESERVED meanwhile
                    settled.append(done)
        if missing:
            metrics.EXPIRY_FAILURES.labels(via="timer", reason="rejected").inc(missing)
            log.warning("the engine did not expire %d orders; retrying them", missing)
        return settled

    def _put_back(self, due: list[Entry], reason: str, exc: Exception) -> None:
        self._backoff_s = min(max(self._backoff_s * 2, self._tick_s), MAX_BACKOFF_S)
        at = self._clock() + self._backoff_s
        for entry in due:
            self._schedule.retry(entry.order_id, at)
        metrics.EXPIRY_FAILURES.labels(via="timer", reason=reason).inc()
        log.warning(
            "could not expire %d orders (%s: %s); retrying in %.2fs",
            len(due),
            reason,
            exc,
            self._backoff_s,
        )

    def _summary(self) -> None:
        if self.expired != self._reported:
            log.info(
                "expiry: %d reservations expired by the timer, %d scheduled",
                self.expired - self._reported,
                len(self._schedule),
            )
            self._reported = self.expired
