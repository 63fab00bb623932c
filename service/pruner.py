"""Retention: deletes what the settings say is old enough, on one worker at a time.

Every worker runs a ``Pruner``; the one whose dedicated connection holds a session advisory
lock prunes, the others stand by and retry each interval (the lock goes with a dead session,
so another takes over). A round, every ``prune_interval_s``:

1. creates the ``stock_movements`` partitions ahead (``db/partitions.py``);
2. deletes, table by table, in batches of ``prune_batch_size`` with ``prune_pause_ms``
   between them: ``processed_events`` older than the dedup window (not those of an order
   still open), finished orders older than the order retention with their reservations and
   history (a tombstone each, ``db/prune_sql.py``), tombstones older than theirs, and with a
   movement retention the whole months of movements before it (dropped) and the rows before
   it in the oldest kept month; and the outbox rows published longer ago than
   ``outbox_retention_hours``;
3. VACUUMs a pruned table whose dead rows exceed autovacuum's threshold for it (5 % of the
   live ones, revision 0007), without giving the table's end back (no ACCESS EXCLUSIVE
   lock): with short retentions autovacuum, which visits a table at most once a minute,
   leaves minutes of dead rows whose space nothing reuses until a vacuum
   (``bench/growth.py`` measured it);
4. sets ``inventory_oldest_row_age_seconds{table}``.

Each batch is one short transaction that skips rows the engine holds and gives up on a lock
after ``LOCK_TIMEOUT_MS``: the engine waits on the pruner at most one small batch. A batch
that fails is logged and counted (``inventory_prune_failures_total``); the round moves on to
the next table and the next round retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from db import outbox_sql, partitions, prune_sql, session
from db.session import Database
from service import metrics
from service.background import BackgroundLoop
from service.config import Settings

log = logging.getLogger(__name__)

# a batch gives up on a lock after this long rather than queue the engine behind it
LOCK_TIMEOUT_MS = 200

Connect = Callable[[Database], Awaitable[asyncpg.Connection]]
Batch = Callable[[asyncpg.Connection], Awaitable[dict[str, int]]]


@dataclass
class RoundReport:
    pruned: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    vacuumed: list[str] = field(default_factory=list)


def pruner_database(settings: Settings) -> Database:
    return replace(settings.database("pruner"), lock_timeout_ms=LOCK_TIMEOUT_MS)


async def ensure_partitions(conn: asyncpg.Connection, settings: Settings) -> list[str]:
    """The movement partitions of this month and the ones ahead (every writing process, at
    start-up, and the pruner each round)."""
    created = await partitions.ensure_ahead(
        conn, datetime.now(UTC), settings.movement_partitions_ahead
    )
    if created:
        log.info("created stock_movements partitions %s", ", ".join(created))
    return created


async def ensure_partitions_at_start(db: AsyncEngine, settings: Settings) -> None:
    """At start-up of a process that writes. A failure (the database down, a lock not had in
    time) is logged, not fatal: the service starts as it would without it, and the pruner's
    rounds retry; a batch that finds no partition fails with the database's error."""
    try:
        async with db.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await ensure_partitions(raw, settings)
            await conn.rollback()
    except Exception as exc:
        log.warning("creating movement partitions ahead failed (%s); the pruner retries", exc)


class Pruner(BackgroundLoop):
    task_name = "pruner"

    def __init__(self, settings: Settings, *, connect: Connect = session.connect) -> None:
        super().__init__()
        self._settings = settings
        self._connect = connect
        self._lock_key = prune_sql.advisory_key(settings.app_id)
        self.is_leader = False
        self.rounds = 0
        _export_retentions(settings)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._lead_or_stand_by()
            except Exception:  # a lost connection: the next attempt connects again
                log.exception("pruner failed (connection lost?); retrying")
                await self._sleep(self._settings.prune_interval_s)

    async def _lead_or_stand_by(self) -> None:
        conn = await self._connect(pruner_database(self._settings))
        try:
            if not await prune_sql.try_lock(conn, self._lock_key):
                await self._sleep(self._settings.prune_interval_s)
                return
            log.info("pruner: this worker prunes")
            self.is_leader = True
            metrics.PRUNER_LEADER.set(1)
            while not self._stopping.is_set():
                await self.prune_round(conn)
                if await self._sleep(self._settings.prune_interval_s):
                    return
        finally:
            self.is_leader = False
            metrics.PRUNER_LEADER.set(0)
            # closing the session releases the lock
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
            if not conn.is_closed():
                conn.terminate()

    async def prune_round(self, conn: asyncpg.Connection) -> RoundReport:
        """One round on a connection that holds the lock (tests call it directly)."""
        self.rounds += 1
        report = RoundReport()
        settings = self._settings
        try:
            report.partitions_created = await ensure_partitions(conn, settings)
        except (asyncpg.PostgresError, OSError) as exc:
            report.failed.append("partitions")
            log.warning("creating movement partitions failed (%s); next round retries", exc)
        limit = settings.prune_batch_size
        await self._drain(
            conn,
            report,
            "processed_events",
            lambda c: _one(
                "processed_events",
                prune_sql.prune_events(c, settings.dedup_window.total_seconds(), limit),
            ),
        )
        await self._drain(conn, report, "orders", self._orders_batch)
        await self._drain(
            conn,
            report,
            "order_tombstones",
            lambda c: _one(
                "order_tombstones",
                prune_sql.prune_tombstones(c, settings.tombstone_retention.total_seconds(), limit),
            ),
        )
        await self._drain(
            conn,
            report,
            "outbox",
            lambda c: _one(
                "outbox",
                outbox_sql.prune_published(c, settings.outbox_retention_hours * 3600, limit),
            ),
        )
        if settings.movement_retention is not None:
            await self._prune_movements(conn, report)
        if any(report.pruned.values()):
            report.vacuumed = await self._vacuum(conn)
        await self._measure_ages(conn)
        pruned = {table: n for table, n in report.pruned.items() if n}
        if pruned or report.partitions_dropped:
            log.info(
                "pruned %s; partitions dropped %s", pruned or "nothing", report.partitions_dropped
            )
        return report

    async def _orders_batch(self, conn: asyncpg.Connection) -> dict[str, int]:
        settings = self._settings
        done = await prune_sql.prune_orders(
            conn, settings.order_retention.total_seconds(), settings.prune_batch_size
        )
        # the tombstones are written, not pruned: they are not counted
        return {
            "orders": done.orders,
            "reservations": done.reservations,
            "order_history": done.history,
        }

    async def _prune_movements(self, conn: asyncpg.Connection, report: RoundReport) -> None:
        assert self._settings.movement_retention is not None
        horizon = datetime.now(UTC) - self._settings.movement_retention
        try:
            report.partitions_dropped = await partitions.drop_older_than(conn, horizon)
        except (asyncpg.PostgresError, OSError) as exc:
            report.failed.append("stock_movements")
            metrics.PRUNE_FAILURES.labels(table="stock_movements").inc()
            log.warning("dropping movement partitions failed (%s); next round retries", exc)
        limit = self._settings.prune_batch_size
        await self._drain(
            conn,
            report,
            "stock_movements",
            lambda c: _one("stock_movements", prune_sql.prune_movements(c, horizon, limit)),
        )

    async def _drain(
        self, conn: asyncpg.Connection, report: RoundReport, name: str, batch: Batch
    ) -> None:
        """Batches until one comes back short (or stop); a failed batch ends this table's turn."""
        limit = self._settings.prune_batch_size
        pause_s = self._settings.prune_pause_ms / 1000
        while not self._stopping.is_set():
            try:
                counts = await batch(conn)
            except (asyncpg.PostgresError, OSError) as exc:
                report.failed.append(name)
                metrics.PRUNE_FAILURES.labels(table=name).inc()
                log.warning("pruning %s failed (%s); the next round retries", name, exc)
                return
            for table, n in counts.items():
                report.pruned[table] = report.pruned.get(table, 0) + n
                if n:
                    metrics.PRUNED_ROWS.labels(table=table).inc(n)
            if counts.get(name, 0) < limit:
                return
            if pause_s and await self._sleep(pause_s):
                return

    async def _vacuum(self, conn: asyncpg.Connection) -> list[str]:
        try:
            return await prune_sql.vacuum_churned(conn)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("vacuum after pruning failed (%s); autovacuum will do it", exc)
            return []

    async def _measure_ages(self, conn: asyncpg.Connection) -> None:
        try:
            ages = await prune_sql.oldest_ages(conn)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("measuring the oldest rows failed: %s", exc)
            return
        for table, age in ages.items():
            metrics.OLDEST_ROW_AGE.labels(table=table).set(age or 0.0)


async def _one(table: str, deleted: Awaitable[int]) -> dict[str, int]:
    return {table: await deleted}


def _export_retentions(settings: Settings) -> None:
    retentions = {
        "processed_events": settings.dedup_window,
        "orders": settings.order_retention,
        "order_tombstones": settings.tombstone_retention,
        "stock_movements": settings.movement_retention,
        "outbox": timedelta(hours=settings.outbox_retention_hours),
    }
    for table, retention in retentions.items():
        if retention is not None:
            metrics.RETENTION_SECONDS.labels(table=table).set(retention.total_seconds())


__all__ = [
    "Pruner",
    "RoundReport",
    "ensure_partitions",
    "ensure_partitions_at_start",
    "pruner_database",
]
