"""Reading the audit window from Kafka: the order topics, the DLQ, the group's offsets.

A plain consumer with manual assignment (no group, never commits) reads each order partition
from its start to its high watermark taken at the start, and the whole DLQ. Nothing here
creates a topic: the topics are listed first and only existing ones are assigned.

Order of reads, so that a running worker cannot make the audit report a false loss: the
order topics' ends, then the group's committed offsets, then the DLQ's ends; the ledger is
read after all of them (``streams/audit/runner.py``). An event the group committed past was
in PostgreSQL, and its dead letter in the DLQ, before the offsets were read.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from service.bootstrap import limits_from
from service.config import Settings
from service.domain.validation import Limits
from streams.audit.report import Position, SeenEvent, Undecodable, Window
from streams.records import DeadLetter, InvalidEvent, TopicKinds, decode_order_event

FETCH_MAX_WAIT_MS = 100  # Tansu holds a fetch for its whole wait (docs/expiry.md)
STALL_S = 60.0  # no record for this long while a partition is short of its end: give up


class CannotAudit(Exception):
    """The audit could not run (broker or database unreachable, a missing topic, bad input)."""


async def read_window(
    settings: Settings,
    *,
    since: datetime | None = None,
    start_offsets: Mapping[tuple[str, int], int] | None = None,
) -> Window:
    try:
        async with contextlib.AsyncExitStack() as stack:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-audit"
            )
            await admin.start()
            stack.push_async_callback(admin.close)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap,
                client_id=f"{settings.app_id}-audit",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                max_poll_records=5_000,
            )
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            reader = _Reader(settings, admin, consumer, since)
            return await reader.read(dict(start_offsets or {}))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise CannotAudit(f"Kafka at {settings.kafka_bootstrap}: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Reader:
    def __init__(
        self,
        settings: Settings,
        admin: AIOKafkaAdminClient,
        consumer: AIOKafkaConsumer,
        since: datetime | None,
    ) -> None:
        self.settings = settings
        self.admin = admin
        self.consumer = consumer
        self.since_ms = None if since is None else int(since.timestamp() * 1000)
        self.kinds = TopicKinds.from_settings(settings)
        self.limits: Limits = limits_from(settings)
        self.window = Window(group=settings.app_id)

    async def read(self, start_offsets: dict[tuple[str, int], int]) -> Window:
        settings = self.settings
        existing = set(await self.admin.list_topics())
        missing = [t for t in settings.order_topics if t not in existing]
        if missing:
            names = ", ".join(missing)
            raise CannotAudit(
                f"order topic {names} does not exist"
                if len(missing) == 1
                else f"order topics {names} do not exist"
            )
        await self.consumer.topics()  # the whole cluster's metadata: creates nothing
        order_tps = [tp for topic in settings.order_topics for tp in self._partitions(topic)]
        unknown = sorted(set(start_offsets) - {(tp.topic, tp.partition) for tp in order_tps})
        if unknown:
            where = ", ".join(f"{t}:{p}" for t, p in unknown)
            raise CannotAudit(
                f"a start offset (--from) names no partition of an order topic: {where}"
            )
        ends = await self.consumer.end_offsets(order_tps)
        starts = await self._starts(order_tps, start_offsets)
        offsets = await self.admin.list_consumer_group_offsets(
            settings.app_id, partitions=order_tps
        )
        self.window.committed = {
            (tp.topic, tp.partition): meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0
        }
        if settings.topic_dlq in existing:  # no DLQ topic: no dead letters
            dlq_tps = self._partitions(settings.topic_dlq)
            starts.update(await self.consumer.beginning_offsets(dlq_tps))
            ends.update(await self.consumer.end_offsets(dlq_tps))
        await self._read(starts, ends)
        return self.window

    def _partitions(self, topic: str) -> list[TopicPartition]:
        ids = self.consumer.partitions_for_topic(topic) or set()
        if not ids:
            raise CannotAudit(f"topic {topic} has no partitions in the broker's metadata")
        return [TopicPartition(topic, p) for p in sorted(ids)]

    async def _starts(
        self, tps: list[TopicPartition], start_offsets: dict[tuple[str, int], int]
    ) -> dict[TopicPartition, int]:
        starts = dict(await self.consumer.beginning_offsets(tps))
        if self.since_ms is not None:
            # Only a hint: Tansu answers offset 0 with timestamp -1 for any time. An answer
            # whose record is older than asked is ignored; records are filtered by timestamp.
            found = await self.consumer.offsets_for_times(dict.fromkeys(tps, self.since_ms))
            for tp, hit in found.items():
                if hit is not None and hit.timestamp >= self.since_ms:
                    starts[tp] = max(starts[tp], hit.offset)
        for tp in tps:
            offset = start_offsets.get((tp.topic, tp.partition))
            if offset is not None:
                starts[tp] = max(offset, starts[tp])  # below the log start: what is left
        return starts

    async def _read(
        self, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
    ) -> None:
        """Each partition from its start until its position reaches its end; never waits for
        new records. A fetch returns whole batches, so the rest of a batch that straddles the
        end comes too and is kept (Tansu reports the end as the last batch's base offset + 1).
        """
        consumer = self.consumer
        remaining = {tp for tp, end in ends.items() if starts[tp] < end}
        if not remaining:
            return
        consumer.assign(sorted(remaining))
        for tp in remaining:
            consumer.seek(tp, starts[tp])
        progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    self._record(tp, record)
            if batches:
                progress = time.monotonic()
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    consumer.pause(tp)
                    remaining.discard(tp)
            if remaining and time.monotonic() - progress > STALL_S:
                short = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(remaining))
                raise CannotAudit(f"no progress reading {short} for {STALL_S:.0f}s")

    def _record(self, tp: TopicPartition, record: Any) -> None:
        window = self.window
        if tp.topic == self.settings.topic_dlq:
            window.dead_letters_read += 1
            source = _dead_letter_source(record.value)
            if source is not None:
                window.dead_letters.add(source)
            return
        if self.since_ms is not None and record.timestamp < self.since_ms:
            return
        window.read_by_topic[tp.topic] = window.read_by_topic.get(tp.topic, 0) + 1
        at = Position(tp.topic, tp.partition, record.offset)
        kind = self.kinds.kind_of(tp.topic)
        try:
            command = decode_order_event(kind, record.value, self.limits)
        except InvalidEvent as exc:
            window.undecodable.append(Undecodable(at, kind, exc.error, exc.reason, exc.event_id))
            return
        assert command.event_id is not None  # every decoded order event carries one
        window.events.append(SeenEvent(at, kind, command.event_id, command.order_id))


def _dead_letter_source(raw: bytes | None) -> Position | None:
    """Where the original of a dead letter was (its source topic, partition and offset)."""
    try:
        letter = DeadLetter.from_data(json.loads(raw or b""))
        return Position(str(letter.source_topic), int(letter.partition), int(letter.offset))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # not a dead letter of this service
