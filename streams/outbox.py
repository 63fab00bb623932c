"""The outbox relay: publishes committed outbox rows to Kafka, in id order, then marks them.

One relay publishes at a time: the one whose connection holds a PostgreSQL session advisory
lock. The others stand by and retry, so one takes over within a second when the holder dies
(its session ends, and so does the lock). The relay reads and marks rows on that same
connection: if it dies, the relay's statements fail and it stops publishing.

Order per key: rows are read in id order, and the engine writes a key's rows in commit order
(it holds the stock or order row lock while writing them). The producer keeps one request in
flight per broker and mutes a partition until its batch is acknowledged (aiokafka's sender),
so records of one partition land in send order even across retries; the same key always maps
to the same partition. Only a request that fails for good while a later one of the same
partition succeeds can put a republished row behind a newer one (without an idempotent
producer, which Tansu lacks, that cannot be ruled out); only the rows before the first
failure are marked, so nothing is ever skipped.

The relay is woken by the commits themselves: every engine transaction that writes outbox
rows also notifies a PostgreSQL channel (``db/ledger.py``), delivered at commit to the
relay's connection, whichever process made the commit (an API process, a worker, the
sweeper). ``outbox_poll_interval_ms`` is only the backstop for a notification lost with a
connection. ``bench/outbox_latency.py`` measures commit to broker.

A crash between publish and mark republishes those rows: delivery is at least once, and
consumers drop duplicates (``stock-changed`` by ``version``, ``inventory-reservations`` by
order id and status).

Published rows are deleted by the pruner (``service/pruner.py``) after
``outbox_retention_hours``, with the other retentions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaProducer

from db import outbox_sql, session
from db.outbox_sql import OutboxRow
from db.session import Database
from service import metrics
from service.config import Settings
from streams.kafka_batches import PartitionBatches, RecordTooLarge, create_producer, partition_for

log = logging.getLogger(__name__)

STANDBY_RETRY_S = 1.0
HOUSEKEEPING_INTERVAL_S = 5.0

Connect = Callable[[Database], Awaitable[asyncpg.Connection]]


def outbox_producer(settings: Settings) -> AIOKafkaProducer:
    return create_producer(settings.kafka_bootstrap, f"{settings.app_id}-outbox")


class OutboxRelay:
    def __init__(
        self,
        settings: Settings,
        *,
        producer_factory: Callable[[Settings], AIOKafkaProducer] = outbox_producer,
        connect: Connect = session.connect,
        standby_retry_s: float = STANDBY_RETRY_S,
    ) -> None:
        self._settings = settings
        self._producer_factory = producer_factory
        self._connect = connect
        self._standby_retry_s = standby_retry_s
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._lock_key = outbox_sql.advisory_key(settings.app_id)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self.is_leader = False
        self.published = 0

    async def start(self) -> None:
        self._producer = self._producer_factory(self._settings)
        await self._producer.start()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def notify(self) -> None:
        """Something was committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Publish what is already committed (bounded), then stop."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=drain_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._lead_or_stand_by()
            except Exception:
                log.exception("outbox relay failed (connection lost?); retrying")
                await self._sleep(self._standby_retry_s)

    async def _lead_or_stand_by(self) -> None:
        conn = await self._connect(self._settings.database("outbox-relay"))
        try:
            if not await outbox_sql.try_lock(conn, self._lock_key):
                await self._sleep(self._standby_retry_s)
                return
            log.info("outbox relay: this worker publishes")
            await outbox_sql.listen(conn, self.notify)
            self.is_leader = True
            metrics.OUTBOX_RELAY_LEADER.set(1)
            await self._publish_until_stopped(conn)
            await outbox_sql.unlock(conn, self._lock_key)
        finally:
            self.is_leader = False
            metrics.OUTBOX_RELAY_LEADER.set(0)
            # closing the session also releases the lock if unlock did not run
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
            if not conn.is_closed():
                conn.terminate()

    async def _publish_until_stopped(self, conn: asyncpg.Connection) -> None:
        batch_size = self._settings.outbox_batch_size
        housekeeping_at = 0.0
        while True:
            stopping = self._stopping.is_set()
            rows = await outbox_sql.fetch_unpublished(conn, batch_size)
            if rows:
                await self._publish(conn, rows)
            now = time.monotonic()
            if now >= housekeeping_at:
                metrics.OUTBOX_BACKLOG.set(await outbox_sql.backlog(conn))
                housekeeping_at = now + HOUSEKEEPING_INTERVAL_S
            if stopping and len(rows) < batch_size:
                return  # the last round after stop() drained what was committed
            if len(rows) < batch_size:
                await self._sleep(self._settings.outbox_poll_interval_ms / 1000)

    async def _publish(self, conn: asyncpg.Connection, rows: Sequence[OutboxRow]) -> None:
        sent = await self._send(rows)
        marked = await outbox_sql.mark_published(conn, [row.id for row in rows[:sent]])
        by_topic: Counter[str] = Counter()
        for topic, latency in marked:
            by_topic[topic] += 1
            metrics.OUTBOX_PUBLISH_SECONDS.observe(latency)
        for topic, n in by_topic.items():
            metrics.OUTBOX_PUBLISHED.labels(topic=topic).inc(n)
        self.published += sent
        if sent < len(rows):
            await self._sleep(self._standby_retry_s)

    async def _send(self, rows: Sequence[OutboxRow]) -> int:
        """Send the rows in per-partition batches; how many leading rows the broker acked.

        Only that prefix is marked: a failed row and every row after it are sent again
        (duplicates, never a gap), which keeps the first copies of each key in order.
        """
        assert self._producer is not None
        batches = PartitionBatches(self._producer)
        known = self._partitions
        for row in rows:
            key = row.key.encode()
            partitions = known.get(row.topic) or await self._topic_partitions(row.topic)
            try:
                await batches.add(row.topic, partition_for(key, partitions), key, row.payload)
            except RecordTooLarge:
                raise ValueError(f"outbox row {row.id} does not fit in a producer batch") from None
        failed = await batches.finish()
        if not failed:
            return len(rows)
        first = min(failed)
        log.warning("outbox publish failed at row %d: %r", rows[first].id, failed[first])
        return first

    async def _topic_partitions(self, topic: str) -> list[int]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            assert self._producer is not None
            partitions = self._partitions[topic] = sorted(
                await self._producer.partitions_for(topic)
            )
        return partitions

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()
