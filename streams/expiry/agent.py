"""The expiry agent and its timer table: order id -> ``expires_at``, a changelog-backed Faust table.

The agent consumes ``inventory-reservations`` (keyed by order id). A RESERVED event puts
``order id -> expires_at`` (epoch seconds) into the table, and an EXTENDED event puts the
order's new ``expires_at`` in place of the old one (the timer table reschedules it; the
sweeper is only the backstop); BACKORDER_FILLED and NOT_EXTENDED leave the entry as it is; any
other status (COMMITTED, RELEASED, EXPIRED, REJECTED, ...) ends the reservation and deletes the
entry. The table's changelog has the topic's partition count and each write goes to the
partition of the event that caused it, so the schedule is co-partitioned with the topic: a
worker recovers exactly the entries of the partitions it is assigned. A batch's changelog
records are acknowledged by the broker before the batch's offsets may be committed (at least
once: a crash replays the events, and a replayed event is a no-op).

The index (``ExpirySchedule``) is trimmed when partitions are assigned (revoked ones leave) and
rebuilt from the table when recovery from the changelog completes. The timer (``timer.py``)
empties it and has the table entries of settled orders deleted.

Faust's windowed tables are not used: keys restored from their changelog never expire
(robinhood/faust #44, #385; faust-streaming #193). Nothing escapes the agent: errors are
caught, logged and counted (``inventory_expiry_failures_total``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from service import metrics
from service.config import Settings
from service.domain.events import MalformedEvent, ReservationChanged, decode_reservation_changed
from service.expiry_port import Expirer
from streams.agents import raw_topic
from streams.expiry.changelog import ChangelogWriter, Record
from streams.expiry.schedule import Entry, ExpirySchedule
from streams.expiry.timer import EXPIRE_CHUNK, ExpiryTimer
from streams.kafka_batches import partition_for

log = logging.getLogger(__name__)

TABLE_NAME = "expiry-schedule"
AGENT_NAME = "expiry-schedule"
AGENT_BATCH = 1_000
AGENT_WITHIN_S = 0.05
CHANGELOG_CONFIGS = {  # Faust adds cleanup.policy=compact
    "segment.ms": str(3_600_000),
    "delete.retention.ms": str(3_600_000),
    "min.cleanable.dirty.ratio": "0.1",
}


class ExpiryAgent:
    """The schedule table, the agent that fills it, the index and the timer that empties it.

    Table writes bypass ``table[key] = value`` (too slow at a few thousand a second, see
    ``streams/expiry/changelog.py``): the store is updated directly and the changelog records
    of a batch go out together, each to the partition of the event that caused it, and are
    acknowledged by the broker before the batch's events are. Recovery is Faust's.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        engine: Expirer,
        *,
        chunk: int = EXPIRE_CHUNK,
    ) -> None:
        self._app = app
        self._topic = settings.topic_reservations
        self._partitions = settings.topic_partitions
        self._grace_s = settings.shutdown_grace_s
        self.schedule = ExpirySchedule()
        # the changelog partition of every key in the store: the memory store holds every
        # partition's keys in one dict (revoked and standby ones too)
        self._partition_of: dict[str, int] = {}
        self._unsynced: dict[str, int] = {}  # keys whose last changelog record failed
        self._tombstones: list[Record] = []  # the timer's deletes, not yet sent
        self._sender: asyncio.Task[None] | None = None
        self.table = app.Table(
            TABLE_NAME,
            key_type=str,
            value_type=float,
            partitions=settings.topic_partitions,
            on_changelog_event=self._on_changelog_event,
            on_recover=self._on_recovered,
            help="order id -> expires_at (epoch seconds) of pending reservations",
            # every restart reads the whole changelog (the memory store keeps nothing on
            # disk): let compaction drop settled orders within hours, not the broker
            # defaults of a 7-day active segment and tombstones kept for a day
            extra_topic_configs=CHANGELOG_CONFIGS,
        )
        self.timer = ExpiryTimer(
            self.schedule,
            engine,
            forget=self._forget,
            on_tick=self.resync,
            tick_s=settings.expiry_tick_ms / 1000,
            chunk=chunk,
        )
        app.agent(
            raw_topic(app, settings.topic_reservations, settings), name=AGENT_NAME, concurrency=1
        )(self._consume)
        app.on_partitions_assigned.connect(self._on_assigned)
        self.changelog = ChangelogWriter(
            settings, lambda: self.table.changelog_topic.get_topic_name()
        )
        self.recoveries = 0  # completed recoveries (rebuilds of the index)
        self.restored = 0  # entries in the index after the last rebuild

    async def start(self) -> None:
        """Before the app: the agent writes through the changelog writer from its first batch."""
        await self.changelog.start()
        await self.timer.start()

    async def stop(self) -> None:
        """After the app: the timer finishes its engine call and deletes, then the writer."""
        await self.timer.stop(timeout_s=self._grace_s)
        await self._drain(self._grace_s)
        await self.changelog.stop()

    def __contains__(self, order_id: object) -> bool:
        """Whether the table (this worker's copy) holds the order."""
        return order_id in self.table.data

    # -- the agent --

    async def _consume(self, stream: StreamT[Any]) -> None:
        # take_events is on faust.Stream, not on the StreamT protocol. A batch's events are
        # acknowledged when the loop moves on, after its changelog records were written.
        batches = cast(Any, stream).take_events(AGENT_BATCH, within=AGENT_WITHIN_S)
        async for events in batches:
            try:
                await self.apply(
                    [(e.message.partition, e.message.key, e.message.value) for e in events]
                )
            except Exception:
                metrics.EXPIRY_FAILURES.labels(via="agent", reason="internal").inc()
                log.exception("the expiry schedule failed on a batch of %d events", len(events))

    async def apply(self, events: Sequence[tuple[int, bytes | None, bytes | None]]) -> None:
        """Apply ``inventory-reservations`` events (partition, key, value) to the schedule."""
        records: list[Record] = []
        for partition, key, value in events:
            try:
                change = decode_reservation_changed(key, value)
            except MalformedEvent as exc:
                metrics.EXPIRY_FAILURES.labels(via="agent", reason="invalid").inc()
                log.warning("skipping an event of partition %d: %s", partition, exc)
                continue
            record = self._change(partition, change)
            if record is not None:
                records.append(record)
        metrics.EXPIRY_SCHEDULED.set(len(self.schedule))
        await self._write(records)

    def _change(self, partition: int, change: ReservationChanged) -> Record | None:
        """Update the store and the index; the changelog record to write, if any."""
        store = self.table.data
        order_id = change.order_id
        if not change.changes_hold:
            return None
        if change.expires_at is not None:
            self.schedule.put(Entry(order_id, change.expires_at, partition))
            self._partition_of[order_id] = partition
            if store.get(order_id) == change.expires_at:
                return None  # a redelivery: the changelog has it
            store[order_id] = change.expires_at
            return (partition, order_id, change.expires_at)
        self.schedule.discard(order_id)
        self._partition_of.pop(order_id, None)
        if store.pop(order_id, None) is None:
            return None  # the timer deleted it already (or it was never scheduled)
        return (partition, order_id, None)

    # -- the timer's deletes --

    async def _forget(self, entries: list[Entry]) -> None:
        """Delete settled orders: from the store now, from the changelog in the background.

        The timer does not wait for the broker: with Kafka down it would wait a request
        timeout per window, and expiry (stock back in PostgreSQL) must not depend on Kafka.
        """
        store = self.table.data
        for entry in entries:
            self._partition_of.pop(entry.order_id, None)
            if store.pop(entry.order_id, None) is not None:
                self._tombstones.append((entry.partition, entry.order_id, None))
        self._send_in_background()

    async def resync(self) -> None:
        """Re-send the records that failed (the timer calls this every tick)."""
        if self._unsynced:
            self._send_in_background()

    def _send_in_background(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_tombstones(), name="expiry-changelog")

    async def _send_tombstones(self) -> None:
        while self._tombstones or self._unsynced:
            records, self._tombstones = self._tombstones, []
            await self._write(records)
            if self._unsynced:
                return  # failing: the next tick tries again

    async def _drain(self, timeout_s: float) -> None:
        if self._sender is not None and not self._sender.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._sender), timeout=timeout_s)
            except TimeoutError:
                log.warning("stopping with changelog deletes unsent (the sweeper is the backstop)")
                self._sender.cancel()

    async def _write(self, records: list[Record]) -> None:
        """Write changelog records and wait for the broker.

        A record that failed marks its key unsynced; the next write (at the latest the
        timer's next tick) sends the key's *current* state from the store, so a late re-send
        never brings back an older one. Until then a crash loses that record: the sweeper is
        the backstop.
        """
        if self._unsynced:
            retry, self._unsynced = self._unsynced, {}
            store, fresh = self.table.data, {key for _, key, _ in records}
            resend = [(p, key, store.get(key)) for key, p in retry.items() if key not in fresh]
            records = resend + records
        if not records:
            return
        try:
            failed = await self.changelog.write(records)
        except Exception:  # the writer returns failures; this would be a bug
            log.exception("the changelog writer failed")
            failed = list(records)
        if failed:
            for partition, key, _ in failed:
                self._unsynced[key] = partition
            metrics.EXPIRY_FAILURES.labels(via="agent", reason="changelog").inc()
            log.warning("%d changelog records failed; re-sending with the next write", len(failed))

    # -- rebalance and recovery --

    async def _on_changelog_event(self, event: EventT[Any]) -> None:
        """Recovery reads the changelog: remember each key's partition (before it is applied)."""
        try:
            key = event.key
            if not isinstance(key, str):
                return
            if event.message.value is None:
                self._partition_of.pop(key, None)
            else:
                self._partition_of[key] = event.message.partition
        except Exception:
            log.exception("expiry schedule: could not track a changelog event")

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """A new assignment: the entries of revoked partitions leave the index at once."""
        try:
            assigned = args[0] if args else kwargs.get("assigned", ())
            partitions = {tp.partition for tp in assigned or () if tp.topic == self._topic}
            dropped = self.schedule.retain(partitions)
            if dropped:
                log.info("expiry schedule: %d entries left with revoked partitions", dropped)
        except Exception:
            log.exception("expiry schedule: could not apply a new assignment")

    async def _on_recovered(self) -> None:
        """The table is recovered from its changelog: rebuild the index from it."""
        try:
            self._rebuild(self._assigned_partitions())
        except Exception:
            metrics.EXPIRY_FAILURES.labels(via="agent", reason="recovery").inc()
            log.exception("expiry schedule: could not rebuild the index after recovery")

    def _assigned_partitions(self) -> set[int]:
        consumer: Any = self._app.consumer
        return {tp.partition for tp in consumer.assignment() if tp.topic == self._topic}

    def _rebuild(self, partitions: set[int]) -> None:
        store = self.table.data
        keep: list[Entry] = []
        stale: list[str] = []
        all_partitions = list(range(self._partitions))
        for order_id, expires_at in list(store.items()):
            partition = self._partition_of.get(order_id)
            if partition is None:  # not seen being written or restored: where the relay put it
                partition = partition_for(str(order_id).encode(), all_partitions)
            if partition not in partitions:
                stale.append(order_id)
            elif isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
                keep.append(Entry(order_id, float(expires_at), partition))
        for order_id in stale:  # another worker owns them now; its changelog copy is theirs
            store.pop(order_id, None)
            self._partition_of.pop(order_id, None)
        self.schedule.replace(keep)
        self.recoveries += 1
        self.restored = len(keep)
        metrics.EXPIRY_SCHEDULED.set(len(keep))
        next_due = self.schedule.next_due()
        log.info(
            "expiry schedule rebuilt: %d entries on partitions %s%s",
            len(keep),
            sorted(partitions),
            f", next due in {next_due - time.time():.1f}s" if next_due is not None else "",
        )


def register_expiry(app: faust.App, settings: Settings, engine: Expirer) -> ExpiryAgent:
    """Declare the schedule table and the expiry agent on ``app``; start it after the app."""
    return ExpiryAgent(app, settings, engine)
