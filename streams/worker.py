"""The stream worker: the Faust app (order agents), the outbox relay, the expiry sweeper, the
pruner (retention) and the stall watch over the order partitions, in the caller's loop.

``service/lifecycle.py`` starts it for ``--role worker|all`` next to the gRPC server. Faust's own
``Worker`` is not used (it owns the loop and the signals); the app is started and stopped as a
service: ``await app.start()`` / ``await app.stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import faust

from service import metrics
from service.config import Settings
from service.pruner import Pruner
from service.sweeper import ExpirySweeper
from streams.agents import BatchRunner, TopicDeadLetterSink, register_order_agents
from streams.app import check_topic_layout, create_app, ensure_topics
from streams.expiry.agent import ExpiryAgent, register_expiry
from streams.handler import OrderEventHandler
from streams.offsets import OffsetGuard, Partition, StallWatch, lag_by_label
from streams.outbox import OutboxRelay
from streams.records import KIND_LABELS, TopicKinds
from streams.warmer import register_warmer

if TYPE_CHECKING:
    from service.bootstrap import Container

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 10.0
STALL_TICK_S = 1.0  # how often the order partitions are looked at for a standstill
# the consumer lag gauge's labels of the topics that are not order topics (their default names)
RESERVATIONS_LABEL = "inventory-reservations"
STOCK_CHANGED_LABEL = "stock-changed"


class StreamWorker:
    def __init__(
        self,
        settings: Settings,
        container: Container,
        *,
        summary_interval_s: float = SUMMARY_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._container = container
        kinds = TopicKinds.from_settings(settings).pairs()
        self._topic_labels = {name: KIND_LABELS[kind] for kind, name in kinds}
        # every topic whose consumer lag is reported: the order topics, and those of the
        # expiry agent and the cache warmer (``_start`` adds them), which can fall behind too
        self._lag_labels = dict(self._topic_labels)
        self._summary_interval_s = summary_interval_s
        self._stopping = asyncio.Event()
        self.app: faust.App | None = None
        self.handler: OrderEventHandler | None = None
        self.relay: OutboxRelay | None = None
        self.expiry: ExpiryAgent | None = None
        self.sweeper: ExpirySweeper | None = None
        self.pruner: Pruner | None = None
        self._runners: dict[str, BatchRunner] = {}
        self._summary: asyncio.Task[None] | None = None
        self._stall_watch: asyncio.Task[None] | None = None
        self._summary_since = time.monotonic()
        self._started = False

    @property
    def running(self) -> bool:
        """Started, not stopping, and the order agents have not halted on a bug."""
        return (
            self._started
            and not self._stopping.is_set()
            and not (self.handler is not None and self.handler.halted)
        )

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # whatever did start (the relay, the app) must not linger
            raise

    async def _start(self) -> None:
        settings = self._settings
        await ensure_topics(settings)
        await check_topic_layout(settings)
        guard = OffsetGuard(settings.order_topics)
        self.app = app = create_app(settings, guard)
        self.relay = OutboxRelay(settings)
        self.handler = OrderEventHandler(
            self._container.engine,
            TopicDeadLetterSink(app, settings),
            self._container.limits,
            stopping=self._stopping,
        )
        self._runners = register_order_agents(app, settings, guard, self.handler)
        if self._container.cache is not None:
            register_warmer(app, settings.topic_stock_changed, self._container.cache)
            self._lag_labels[settings.topic_stock_changed] = STOCK_CHANGED_LABEL
        self.expiry = register_expiry(app, settings, self._container.engine)
        self._lag_labels[settings.topic_reservations] = RESERVATIONS_LABEL
        self.sweeper = ExpirySweeper(settings, self._container.db, self._container.engine)
        await self.relay.start()
        await self.expiry.start()
        await app.start()
        await self.sweeper.start()
        self.pruner = Pruner(settings)
        await self.pruner.start()
        self._summary = asyncio.create_task(self._summarize(), name="stream-summary")
        watch = StallWatch(guard, settings.consumer_stall_s)
        self._stall_watch = asyncio.create_task(self._watch_stalls(watch), name="stall-watch")
        self._started = True
        log.info(
            "stream worker started: group %s, topics %s",
            settings.app_id,
            ", ".join(settings.order_topics),
        )

    async def stop(self) -> None:
        """Finish the in-flight batch, stop consuming, publish what committed, then stop."""
        self._stopping.set()
        if self._stall_watch is not None:  # no seek while the consumer stops
            await _cancelled(self._stall_watch)
        grace = self._settings.shutdown_grace_s
        if self.handler is not None:
            try:
                await asyncio.wait_for(self.handler.wait_idle(), timeout=grace)
            except TimeoutError:
                log.warning("an order batch was still running after %.1fs; stopping anyway", grace)
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.pruner is not None:
            await self.pruner.stop()
        if self.app is not None:
            await self.app.stop()
        if self.expiry is not None:
            await self.expiry.stop()
        if self._summary is not None:
            await _cancelled(self._summary)
        if self.relay is not None:
            await self.relay.stop(drain_timeout_s=grace)
        self._started = False
        log.info("stream worker stopped")

    async def _watch_stalls(self, watch: StallWatch) -> None:
        """Seek back the order partitions that stand short of their log end (``StallWatch``)."""
        assert self.app is not None
        app = self.app
        consumer: Any = app.consumer  # ConsumerT does not declare flow_active
        while True:
            await asyncio.sleep(STALL_TICK_S)
            now = time.monotonic()
            if app.rebalancing or not consumer.flow_active or self._waiting_on_database():
                watch.restart(now)  # nothing is fetched, or nothing taken, meanwhile
                continue
            try:
                await self._seek_stalled(watch, now)
            except Exception:  # the watch must never take the worker down
                log.exception("looking for stalled order partitions failed")

    def _waiting_on_database(self) -> bool:
        """A batch waits for the database: the agents stop taking events (and once a buffer is
        full, Faust's one delivery loop stops for all of them): no partition stalls on its own."""
        return self.handler is not None and self.handler.retrying > 0

    async def _seek_stalled(self, watch: StallWatch, now: float) -> None:
        assert self.app is not None
        consumer: Any = self.app.consumer
        guard = watch.guard
        highwaters = self._log_ends()  # the watch looks at the guarded ones only
        runners = self._runners
        for tp, offset in watch.due(now, highwaters, lambda topic: runners[topic].blocked):
            if guard.expected(tp) != offset:  # it moved meanwhile
                continue
            # Faust's read position says where the records were dropped (docs/pitfalls.md)
            read = getattr(consumer, "_read_offset", {}).get(tp)
            log.warning(
                "%s[%d] stands at offset %d while its log ends at %d, its agent free: seeking "
                "back (records were dropped before they reached the agent; Faust's read "
                "position %s)",
                tp.topic,
                tp.partition,
                offset,
                highwaters[tp],
                read,
            )
            metrics.CONSUMER_STALL_SEEKS.labels(topic=self._topic_labels[tp.topic]).inc()
            await consumer.seek(tp, offset)
            guard.sought(tp, offset)

    async def _summarize(self) -> None:
        self._summary_since = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self._summary_interval_s)
                self._summary_now()
        finally:  # the last stretch before stop() is logged too
            self._summary_now()

    def _summary_now(self) -> None:
        now = time.monotonic()
        try:
            self._log_summary(now - self._summary_since)
        except Exception:  # a summary must never take the worker down
            log.exception("stream summary failed")
        self._summary_since = now

    def _log_summary(self, elapsed: float) -> None:
        assert self.handler is not None
        events, outcomes = self.handler.tally.take()
        lag = self.update_lag()
        order_lag = sum(lag.get(label, 0) for label in self._topic_labels.values())
        expiry_lag = lag.get(RESERVATIONS_LABEL, 0)
        if not events and not order_lag and not expiry_lag:
            return
        log.info(
            "stream: %.0f events/s, reserved %d, rejected %d, committed %d, released %d, "
            "duplicates %d, dlq %d, lag %d, expiry lag %d",
            events / elapsed if elapsed > 0 else 0.0,
            outcomes["reserved"],
            outcomes["rejected"],
            outcomes["committed"],
            outcomes["released"],
            outcomes["duplicate"],
            outcomes["dlq"],
            order_lag,
            expiry_lag,
        )

    def _log_ends(self) -> dict[Partition, int | None]:
        """The log end of every assigned partition (None until a fetch reported it)."""
        assert self.app is not None
        consumer: Any = self.app.consumer
        return {tp: consumer.highwater(tp) for tp in consumer.assignment()}

    def update_lag(self) -> dict[str, int]:
        """Set the consumer lag gauge of every topic the worker consumes (the order topics, the
        expiry agent's results, the warmer's stock changes); returns it by label."""
        if self.app is None:
            return {}
        lag = dict.fromkeys(self._lag_labels.values(), 0)
        consumer: Any = self.app.consumer
        with contextlib.suppress(Exception):
            committed = consumer._committed_offset  # no public API for it
            lag = lag_by_label(self._log_ends(), committed, self._lag_labels)
        for label, value in lag.items():
            metrics.CONSUMER_LAG.labels(topic=label).set(value)
        return lag


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
