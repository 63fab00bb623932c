"""The reservation engine: every write of the service, group-committed.

Commands that arrive within ``batch_window_ms`` (up to ``batch_max_size``) run in one
PostgreSQL transaction: lock the orders and stock rows they touch (in a fixed order), let the
pure planner decide each command in arrival order, write everything in a few bulk statements,
commit. Each caller still gets its own result or typed error; all-or-nothing holds per order,
never per batch. The next batch forms from every command that arrived meanwhile: when the one
before sends its COMMIT, so that the next one begins while it commits (``batches_in_flight`` 2,
the default), except after a batch with a caller who reads its write back (an RPC's), which
runs alone and lets the next batch form when it has finished (always, with 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from db import backorder_sql, ledger, plan_sql, warehouse_sql
from db.session import driver_transaction
from service import metrics
from service.config import Settings
from service.db_errors import Failure, classify
from service.domain.commands import (
    Command,
    Commit,
    Expire,
    Extend,
    OrderCommand,
    Release,
    Reserve,
    Return,
    SetStockPolicy,
    Source,
    StockCommand,
    TransferStock,
    UpdateStock,
)
from service.domain.errors import InventoryError, Unavailable
from service.domain.plan import Result
from service.domain.planner import plan_batch
from service.domain.results import OrderResult, StockLevel, TransferResult
from service.domain.snapshot import Snapshot
from service.domain.validation import WarehouseRecord
from service.engine_claims import duplicates_among, events_to_claim, release_refused
from service.engine_metrics import count_outcome, count_policy_effects
from service.engine_notify import StockChangedHook, StockNotifier
from service.engine_queue import Pending, WritingTurn, reads_back, runs_alone
from service.engine_snapshot import (
    add_backorders,
    ensure_update_targets,
    skus_of,
)
from service.ids import IdSource

log = logging.getLogger(__name__)

RETRIES_ON_CONFLICT = 3


class InternalError(InventoryError):
    """A bug or an unexpected database answer; the caller sees no internals."""

    status = "INTERNAL"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    batch_max_size: int = 256
    batch_window_s: float = 0.0
    allow_split: bool = True
    topic_stock_changed: str = "stock-changed"
    topic_reservations: str = "inventory-reservations"
    topic_stock_alerts: str = "stock-alerts"
    max_inflight_batches: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            batch_max_size=settings.batch_max_size,
            batch_window_s=settings.batch_window_ms / 1000,
            allow_split=settings.allow_split,
            max_inflight_batches=settings.batches_in_flight,
            topic_stock_changed=settings.topic_stock_changed,
            topic_reservations=settings.topic_reservations,
            topic_stock_alerts=settings.topic_stock_alerts,
        )


class ReservationEngine:
    def __init__(
        self,
        db: AsyncEngine,
        config: EngineConfig,
        *,
        on_stock_changed: StockChangedHook | None = None,
    ) -> None:
        self._db = db
        self._config = config
        # Told of every stock row a batch committed (the cache, so that a process reads its
        # own writes at once instead of after the relay and the warmer caught up).
        self._notifier = StockNotifier(on_stock_changed) if on_stock_changed else None
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._slots = asyncio.Semaphore(config.max_inflight_batches)
        # Held by the batch that reads and writes, until it sends its COMMIT: with two slots
        # the next batch forms then, from every command that arrived meanwhile
        # (``_batch_loop``); with one, when the slot frees.
        self._writing = asyncio.Lock()
        self._lock_turn = asyncio.Lock()  # batches take their order locks in arrival order
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self._ids = IdSource()

    # -- lifecycle --

    async def start(self) -> None:
        if self._loop_task is None:
            self._closing = False
            self._loop_task = asyncio.create_task(self._batch_loop(), name="engine-batches")

    async def stop(self) -> None:
        """Stop taking commands; finish every queued and in-flight batch first."""
        self._closing = True
        if self._loop_task is None:
            return
        await self._queue.join()
        self._loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._loop_task
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._notifier is not None:
            await self._notifier.flush()
        self._loop_task = None

    # -- commands --

    async def reserve(self, command: Reserve) -> OrderResult:
        return _order_result(await self._enqueue(command))

    async def commit(self, command: Commit) -> OrderResult:
        return _order_result(await self._enqueue(command))

    async def release(self, command: Release) -> OrderResult:
        return _order_result(await self._enqueue(command))

    async def extend(self, command: Extend) -> OrderResult:
        return _order_result(await self._enqueue(command))

    async def return_stock(self, command: Return) -> OrderResult:
        return _order_result(await self._enqueue(command))

    async def update_stock(self, command: UpdateStock) -> StockLevel:
        return await self._stock_command(command)

    async def update_stock_many(
        self, commands: Sequence[UpdateStock]
    ) -> list[StockLevel | InventoryError]:
        """Each line's level or its own error, in order; queued together, so they run in as
        few batches as ``batch_max_size`` allows (one batch fails only its own lines)."""
        results = await asyncio.gather(*[self._enqueue(command) for command in commands])
        return [
            r if isinstance(r, InventoryError | StockLevel) else _unexpected(r) for r in results
        ]

    async def transfer(self, command: TransferStock) -> TransferResult:
        result = await self._enqueue(command)
        if isinstance(result, InventoryError):
            raise result
        assert isinstance(result, TransferResult)
        return result

    async def set_policy(self, command: SetStockPolicy) -> StockLevel:
        return await self._stock_command(command)

    async def upsert_warehouse(self, warehouse: WarehouseRecord) -> WarehouseRecord:
        """Create or change a warehouse; returns it as stored.

        Not a batch command: it locks no order or stock row, so it runs in a small transaction
        of its own. Every batch loads the warehouses and locks its stock rows joined with
        theirs (``ledger.lock_stocks``: ``StockRow.active``, ``priority``), so the change
        holds from the next batch on, in every process: a deactivated warehouse takes no new
        reservation (allocation skips inactive rows), while commit, release and expiry of the
        reservations it holds never look at ``active``.
        """
        for attempt in (1, 2):
            try:
                async with self._db.begin() as conn:
                    return await warehouse_sql.upsert_warehouse(conn, warehouse)
            except Exception as error:  # classified below, as a batch's failure is
                failure = classify(error)
                if failure is Failure.UNAVAILABLE and attempt == 1:
                    continue  # a pooled connection may have died with a restarted server
                if failure is Failure.BUG:
                    log.exception("upsert of warehouse %s failed", warehouse.warehouse_id)
                    raise InternalError("internal error") from error
                raise Unavailable("database unavailable, nothing was changed; retry") from error
        raise AssertionError("unreachable")

    async def _stock_command(self, command: StockCommand) -> StockLevel:
        result = await self._enqueue(command)
        if isinstance(result, InventoryError):
            raise result
        assert isinstance(result, StockLevel)
        return result

    async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]:
        """Expire the orders whose reservations are still pending and due; others are no-ops."""
        results = await self.execute_many([Expire(order_id) for order_id in order_ids])
        return [r for r in results if isinstance(r, OrderResult)]

    async def execute_many(self, commands: Sequence[Command]) -> list[Result]:
        """Results in order; per-command errors are returned. Raises Unavailable if the
        database failed, in which case this call may be retried whole (redelivery is harmless)."""
        if not commands:
            return []
        futures = [self._enqueue(command) for command in commands]
        results = list(await asyncio.gather(*futures))
        for result in results:
            if isinstance(result, Unavailable):
                raise result
        return results

    def _enqueue(self, command: Command) -> asyncio.Future[Result]:
        if self._closing or self._loop_task is None:
            raise Unavailable("the engine is shutting down")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(command, future))
        return future

    # -- batching --

    async def _batch_loop(self) -> None:
        while True:
            first = await self._queue.get()
            # While a batch reads and writes (until its COMMIT goes out) or every slot is
            # busy, the next batch accumulates by itself: that is the group commit. An idle
            # engine first lets every caller that is already runnable enqueue (one turn of the
            # loop: the callers a batch's answers woke send their next command together), and
            # waits ``batch_window_s`` more if configured.
            await self._slots.acquire()
            await self._writing.acquire()
            if not self._inflight:
                await asyncio.sleep(self._config.batch_window_s)
            batch = self._drain(first)
            # alone, it takes every slot: the next batch forms when it has finished
            slots = self._config.max_inflight_batches if runs_alone(batch) else 1
            for _ in range(slots - 1):
                await self._slots.acquire()
            turn = WritingTurn(self._writing)
            task = asyncio.create_task(self._run(batch, turn))
            self._inflight.add(task)
            task.add_done_callback(functools.partial(self._finished, turn, slots))

    def _finished(self, turn: WritingTurn, slots: int, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        turn.end()
        for _ in range(slots):
            self._slots.release()

    def _drain(self, first: Pending) -> list[Pending]:
        batch = [first]
        while len(batch) < self._config.batch_max_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self, batch: list[Pending], turn: WritingTurn) -> None:
        try:
            live = [p for p in batch if not p.future.done()]  # callers that gave up are skipped
            if live:
                await self._run_live(live, turn)
        except Exception:  # a bug after the transaction: no caller may wait forever for it
            log.exception("a batch of %d failed outside its transaction", len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(InternalError("internal error"))
        finally:
            for _ in batch:
                self._queue.task_done()

    async def _run_live(self, batch: list[Pending], turn: WritingTurn) -> None:
        commands = [p.command for p in batch]
        started = time.perf_counter()
        outcome = await self._execute_with_retry(commands, turn)
        metrics.ENGINE_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.ENGINE_BATCH_SIZE.observe(len(batch))
        if isinstance(outcome, InternalError) and len(batch) > 1:
            # One command tripped something unexpected: run each alone so only it fails.
            for pending in batch:
                await self._run_live([pending], turn)
            return
        for pending, result in zip(
            batch, outcome if isinstance(outcome, list) else [outcome] * len(batch), strict=True
        ):
            count_outcome(pending.command, result)
            if not pending.future.done():
                pending.future.set_result(result)

    async def _execute_with_retry(
        self, commands: list[Command], turn: WritingTurn
    ) -> list[Result] | InventoryError:
        for attempt in range(RETRIES_ON_CONFLICT + 1):
            try:
                return await self._execute(commands, turn)
            except Exception as error:  # classified below; nothing escapes the engine
                failure = classify(error)
                if failure is Failure.UNAVAILABLE and attempt == 0:
                    continue  # a pooled connection may have died with a restarted server
                if failure is Failure.CONFLICT and attempt < RETRIES_ON_CONFLICT:
                    metrics.ENGINE_BATCH_FAILURES.labels("conflict_retried").inc()
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if failure in (Failure.UNAVAILABLE, Failure.CONFLICT):
                    metrics.ENGINE_BATCH_FAILURES.labels("unavailable").inc()
                    log.warning("batch failed, database unavailable: %s", type(error).__name__)
                    return Unavailable("database unavailable, nothing was changed; retry")
                metrics.ENGINE_BATCH_FAILURES.labels("internal").inc()
                log.exception("batch of %d failed unexpectedly", len(commands))
                return InternalError("internal error")
        raise AssertionError("unreachable")

    async def _execute(self, commands: list[Command], turn: WritingTurn) -> list[Result]:
        now = datetime.now(UTC)
        order_ids = sorted({c.order_id for c in commands if not isinstance(c, StockCommand)})
        async with contextlib.AsyncExitStack() as transaction:
            async with self._lock_turn:
                conn = await transaction.enter_async_context(driver_transaction(self._db))
                await ledger.lock_orders(conn, order_ids)
            keyed, events = events_to_claim(commands)
            loaded = await ledger.load_batch(conn, order_ids, events)
            duplicates = duplicates_among(keyed, loaded.claimed)
            snapshot = Snapshot(
                orders=loaded.orders,
                # only orders in the ledger can hold reservations (none: no round trip)
                reservations=await ledger.load_reservations(conn, sorted(loaded.orders)),
                warehouses=loaded.warehouses,
            )
            created = await ensure_update_targets(conn, commands, snapshot)
            snapshot.stocks = await ledger.lock_stocks(conn, skus_of(commands, snapshot))
            backordered = sorted(sid for sid, row in snapshot.stocks.items() if row.backordered)
            add_backorders(
                snapshot,
                # no round trip while no row has backorders
                await backorder_sql.lock_open_lines(conn, backordered) if backordered else [],
            )
            plan = plan_batch(
                snapshot,
                commands,
                duplicates=duplicates,
                now=now,
                allow_split=self._config.allow_split,
                new_id=self._ids.next,
            )
            await release_refused(conn, commands, plan.results, duplicates)
            await ledger.delete_stocks(conn, created - plan.changed_stock_ids)
            outbox = plan.outbox(
                now,
                stock_changed_topic=self._config.topic_stock_changed,
                reservations_topic=self._config.topic_reservations,
                stock_alerts_topic=self._config.topic_stock_alerts,
            )
            await plan_sql.write_plan(conn, plan, outbox)
            turn.end()  # the COMMIT goes out as the block ends, and the next batch forms
        if self._notifier is not None and plan.stock_changes:
            rows = [change.row for change in plan.stock_changes.values()]
            if any(reads_back(command) for command in commands):
                await self._notifier.now(rows, now)
            else:  # events only (engine_notify.py says why)
                self._notifier.later(rows, now)
        count_policy_effects(plan)
        return plan.results


def _unexpected(result: Result) -> InventoryError:
    log.error("a stock command answered %s", type(result).__name__)
    return InternalError("internal error")


def _order_result(result: Result) -> OrderResult:
    if isinstance(result, InventoryError):
        raise result
    assert isinstance(result, OrderResult)
    return result


__all__ = ["EngineConfig", "InternalError", "OrderCommand", "ReservationEngine", "Source"]
