"""The database backstop of expiry: every ``expiry_sweep_interval_s``, expire what is overdue.

The timer table (``streams/expiry/``) expires reservations on time. The sweeper finds any
RESERVED order whose ``expires_at`` passed more than ``expiry_sweep_grace_s`` ago (a schedule
event that never reached the table, a changelog write lost in a crash) and expires it through
the engine. Everything it expires is counted in ``inventory_expiry_sweeper_catches_total``: in
normal running it finds nothing, so a non-zero rate is worth a look.

Every worker runs one; a round first takes a transaction-scoped advisory lock, so one sweeps
at a time and the others skip that round. Running several is harmless anyway: the engine
expires an order only if it is still RESERVED and due, so a second expiry is a no-op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from db import expiry_sql
from db.expiry_sql import Cursor
from service import metrics
from service.background import BackgroundLoop
from service.config import Settings
from service.domain.errors import Unavailable
from service.expiry_port import Expirer, record_expired

log = logging.getLogger(__name__)

SWEEP_CHUNK = 1_000


@dataclass(frozen=True, slots=True)
class SweepReport:
    found: int = 0  # due orders seen
    expired: int = 0  # of which the sweeper expired (the rest were settled meanwhile)
    skipped: bool = False  # another worker held the round lock
    failed: bool = False  # the database or the engine failed; the next round retries


class ExpirySweeper(BackgroundLoop):
    task_name = "expiry-sweeper"

    def __init__(
        self,
        settings: Settings,
        db: AsyncEngine,
        engine: Expirer,
        *,
        interval_s: float | None = None,
        grace_s: float | None = None,
        chunk: int = SWEEP_CHUNK,
    ) -> None:
        super().__init__()
        self._db = db
        self._engine = engine
        self._interval_s = settings.expiry_sweep_interval_s if interval_s is None else interval_s
        self._grace_s = settings.expiry_sweep_grace_s if grace_s is None else grace_s
        self._chunk = chunk
        self._lock_key = expiry_sql.round_lock_key(settings.app_id)
        self.rounds = 0
        self.caught = 0

    async def _run(self) -> None:
        # the first round after one interval: at start-up the timer table is still recovering
        while not await self._sleep(self._interval_s):
            try:
                await self.sweep()
            except Exception:  # the backstop must outlive anything a round throws
                metrics.EXPIRY_FAILURES.labels(via="sweeper", reason="internal").inc()
                log.exception("expiry sweep failed; the next round retries")

    async def sweep(self) -> SweepReport:
        """One round: expire every RESERVED order overdue by more than the grace period."""
        self.rounds += 1
        try:
            async with self._db.begin() as lock_conn:
                if not await expiry_sql.try_round_lock(lock_conn, self._lock_key):
                    return SweepReport(skipped=True)
                report = await self._sweep_pages()
        except Unavailable as exc:
            return self._failed(exc)
        except Exception as exc:  # the database went away under the lock's transaction
            return self._failed(exc)
        if report.expired:
            self.caught += report.expired
            metrics.SWEEPER_CATCHES.inc(report.expired)
            log.warning(
                "expiry sweeper caught %d overdue reservations the timer table missed",
                report.expired,
            )
        return report

    async def _sweep_pages(self) -> SweepReport:
        found = expired = 0
        after = Cursor()
        while not self._stopping.is_set():
            async with self._db.begin() as conn:  # commits (and unlocks the rows) on exit
                due = await expiry_sql.due_orders(
                    conn, grace_s=self._grace_s, limit=self._chunk, after=after
                )
            if not due:
                break
            found += len(due)
            results = await self._engine.expire([order.order_id for order in due])
            expired += record_expired(results, "sweeper", time.time())
            after = Cursor(due[-1].expires_at, due[-1].order_id)
            if len(due) < self._chunk:
                break
        return SweepReport(found=found, expired=expired)

    def _failed(self, exc: Exception) -> SweepReport:
        reason = "unavailable" if isinstance(exc, Unavailable) else "database"
        metrics.EXPIRY_FAILURES.labels(via="sweeper", reason=reason).inc()
        log.warning("expiry sweep failed (%s: %s); the next round retries", reason, exc)
        return SweepReport(failed=True)
