"""The live invariant check: the ledger's invariants, checked on a schedule by one worker.

Every worker runs a monitor; the one whose connection holds a PostgreSQL session advisory lock
checks, the others stand by and take over within ``STANDBY_RETRY_S`` when it goes (its
session ends, and so does the lock), as the outbox relay does. The checker's rounds:

- the first after taking the lock, and then every ``invariant_full_check_interval_s``: the full
  pass of ``inventory check`` (every stock, every movement, every order);
- every ``invariant_check_interval_s`` in between: only the stock rows written since the last
  round began, each against its pending reservations and its last ``RECENT_STEPS`` movements.
  Its cost follows the rate of change, not the size of the ledger.

Each round reads one snapshot (REPEATABLE READ, read only). The problems found stay known by
subject (a stock, an order) until a later pass finds that subject sound, so a damaged row that
nobody touches keeps counting. ``inventory_invariant_violations`` is their number and
``inventory_invariant_last_check_timestamp_seconds`` the end of the last round; a process that
stands by exports 0 problems, so the maximum over the workers is the checker's.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db import invariant_sql as sql
from service import metrics
from service.background import BackgroundLoop
from service.config import Settings
from service.invariants import Problem, find_all, find_changed

log = logging.getLogger(__name__)

STANDBY_RETRY_S = 1.0
RECENT_STEPS = 20  # movements per changed stock row replayed by a bounded pass
# transactions beyond the snapshot's next id that a round also re-checks: age() counts from the
# next id when it is first called, which concurrent writers may have moved on a little
XID_MARGIN = 10_000


def monitor_engine(settings: Settings) -> AsyncEngine:
    """One connection of its own, outside the pool: it holds the lock while this worker checks."""
    return create_async_engine(
        settings.database_url,
        poolclass=NullPool,
        isolation_level="REPEATABLE READ",
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "server_settings": {"application_name": f"{settings.app_id}-invariant-monitor"},
        },
    )


class InvariantMonitor(BackgroundLoop):
    task_name = "invariant-monitor"

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        standby_retry_s: float = STANDBY_RETRY_S,
    ) -> None:
        super().__init__()
        self._engine = engine or monitor_engine(settings)
        self._interval_s = settings.invariant_check_interval_s
        self._full_interval_s = settings.invariant_full_check_interval_s
        self._standby_retry_s = standby_retry_s
        self._lock_key = sql.monitor_lock_key(settings.app_id)
        self._whole_history = settings.movement_retention is None
        self.problems: dict[str, list[Problem]] = {}
        self.rounds = 0
        self.lock_attempts = 0
        self.is_checker = False

    async def stop(self) -> None:
        await super().stop()
        await self._engine.dispose()

    async def _run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                await self._check_or_stand_by()
                failing = False
            except Exception as exc:  # the database went away: stand by, then try again
                # once per outage, not once per retry
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "invariant check stopped (%s); retrying",
                    exc,
                )
                failing = True
            self._stand_by()
            await self._sleep(self._standby_retry_s)

    async def _check_or_stand_by(self) -> None:
        async with self._engine.connect() as conn:
            locked = await conn.scalar(sql.TRY_LOCK, {"key": self._lock_key})
            await conn.commit()
            self.lock_attempts += 1
            if not locked:
                return
            log.info("invariant check: this worker checks the ledger")
            self.is_checker = True
            horizon: int | None = None
            full_due = 0.0
            while not self._stopping.is_set():
                full = horizon is None or time.monotonic() >= full_due
                if full:
                    full_due = time.monotonic() + self._full_interval_s
                horizon = await self.round(conn, None if full else horizon)
                await self._sleep(self._interval_s)
            # closing the session also releases the lock; this only makes it prompt
            await conn.scalar(sql.UNLOCK, {"key": self._lock_key})
            await conn.commit()

    async def round(self, conn: AsyncConnection, since: int | None) -> int:
        """One round: the full pass (``since`` None) or the rows written by transactions from
        ``since`` on; returns the horizon the next round starts from."""
        async with conn.begin():
            await conn.execute(text("SET TRANSACTION READ ONLY"))
            horizon, next_xid = (await conn.execute(sql.SNAPSHOT)).one()
            metrics.BACKORDERED_UNITS.set(await conn.scalar(sql.BACKORDERED_UNITS) or 0)
            if since is None:
                found = await find_all(conn, whole_history=self._whole_history)
                self.problems = {}
            else:
                within = next_xid - since + XID_MARGIN
                checked, found = await find_changed(conn, within, RECENT_STEPS)
                for subject in checked:
                    self.problems.pop(subject, None)
        for problem in found:
            self.problems.setdefault(problem.subject, []).append(problem)
        self.rounds += 1
        violations = sum(len(problems) for problems in self.problems.values())
        metrics.INVARIANT_VIOLATIONS.set(violations)
        metrics.INVARIANT_LAST_CHECK.set(time.time())
        if found:
            log.error(
                "invariant check: %d problem(s), e.g. %s; run `inventory check`",
                violations,
                found[0],
            )
        return int(horizon)

    def _stand_by(self) -> None:
        if self.is_checker:
            log.info("invariant check: this worker stands by")
        self.is_checker = False
        self.problems = {}
        metrics.INVARIANT_VIOLATIONS.set(0)
