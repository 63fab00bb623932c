"""Reading the service's output topics into memory: for end-to-end tests and the benchmark.

A ``TopicCollector`` consumes whole topics from the beginning without a consumer group (no
rebalance wait, no offsets committed), decodes each value as JSON and keeps the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any  # the decoded JSON, or the raw bytes when it is not JSON
    raw: bytes | None


class TopicCollector:
    def __init__(self, bootstrap: str, topics: Iterable[str], *, decode: bool = True) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._decode = decode
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.count = 0

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5_000,
        )
        await consumer.start()
        partitions = []
        for topic in self._topics:
            ids = await self._partitions(consumer, topic)
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._consume(), name="topic-collector")

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        deadline = time.monotonic() + 30
        while True:
            ids = consumer.partitions_for_topic(topic)
            if ids:
                return set(ids)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions")
            await consumer._client.force_metadata_update()  # no public API for a refresh
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _consume(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for m in messages:
                    self.records[tp.topic].append(
                        Record(
                            tp.topic,
                            tp.partition,
                            m.offset,
                            None if m.key is None else m.key.decode("utf-8", "replace"),
                            self._value(m.value),
                            m.value,
                        )
                    )
                    self.count += 1
            if batches:
                self._changed.set()

    def _value(self, raw: bytes | None) -> Any:
        if raw is None or not self._decode:
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    async def caught_up(self) -> bool:
        """True when every assigned partition has been read to its current end."""
        consumer = self._consumer
        assert consumer is not None
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        for tp in assigned:
            if await consumer.position(tp) < ends[tp]:
                return False
        return True

    async def wait_caught_up(self, within_s: float = 60.0) -> None:
        deadline = time.monotonic() + within_s
        while not await self.caught_up():
            if time.monotonic() > deadline:
                raise TimeoutError("the collector did not catch up")
            await self._next_fetch(0.05)

    async def _next_fetch(self, at_most_s: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=at_most_s)

    async def wait_for(
        self, condition: Callable[[], Any], within_s: float = 30.0, what: str = "condition"
    ) -> Any:
        """Wait until ``condition()`` is truthy (checked after each fetch); return its value."""
        deadline = time.monotonic() + within_s
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            await self._next_fetch(min(remaining, 0.5))

    def by_key(self, topic: str, key: str) -> list[Record]:
        return [r for r in self.records.get(topic, []) if r.key == key]
