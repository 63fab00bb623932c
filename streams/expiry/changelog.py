"""Writes the expiry table's changelog records straight to Kafka, in per-partition batches.

Faust writes a table's changelog one record at a time: ``table[key] = value`` queues each in
its producer buffer, which drains one record per loop turn and stalls the stream once it holds
100; ``Topic.send`` costs about 140 µs of CPU per record on the development machines. At a few
thousand reservations per second either left the expiry agent tens of seconds behind its topic.
This writer encodes the records exactly as Faust's ``json`` codec does (so Faust's own recovery
reads them back) and sends them in per-partition batches (``streams/kafka_batches.py``, as the
outbox relay does); the caller waits for the broker's acknowledgement before its events are
acknowledged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from service.config import Settings
from streams.kafka_batches import PartitionBatches, create_producer

Record = tuple[int, str, float | None]  # partition, order id, expires_at (None: a tombstone)


def changelog_producer(settings: Settings) -> AIOKafkaProducer:
    return create_producer(settings.kafka_bootstrap, f"{settings.app_id}-expiry-changelog")


def encode(order_id: str, expires_at: float | None) -> tuple[bytes, bytes | None]:
    """Key and value as the table's ``json`` codec writes them (a tombstone has no value).

    That codec is ``json.dumps`` with compact separators, which for a string or a number
    writes what plain ``json.dumps`` does; the codec's own path (registry lookup, an encoder
    built per call) cost more than the rest of an agent's record.
    """
    key = json.dumps(order_id).encode()
    return key, None if expires_at is None else json.dumps(expires_at).encode()


class ChangelogWriter:
    def __init__(
        self,
        settings: Settings,
        topic: Callable[[], str],
        *,
        producer_factory: Callable[[Settings], AIOKafkaProducer] = changelog_producer,
    ) -> None:
        self._settings = settings
        self._topic = topic  # the changelog's name, known once the table is finalized
        self._producer_factory = producer_factory
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = self._producer_factory(self._settings)
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def write(self, records: Sequence[Record]) -> list[Record]:
        """Send the records, wait for the broker; returns the ones that failed.

        Each partition's records go in as few batches as fit, but its last record always
        alone: Tansu reports a partition's end offset as the base offset of its last batch
        plus one, so the records after the first of a final multi-record batch would lie
        beyond the end that Faust's recovery reads to, and be lost on a restart.
        """
        producer = self._producer
        if not records:
            return []
        if producer is None:
            return list(records)
        topic = self._topic()
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(record[0], []).append(record)
        batches = PartitionBatches(producer)
        for partition, (*leading, last) in by_partition.items():
            for _, order_id, expires_at in leading:
                await batches.add(topic, partition, *encode(order_id, expires_at))
            await batches.seal(topic, partition)  # the last record goes alone (see above)
            await batches.add(topic, partition, *encode(last[1], last[2]))
            await batches.seal(topic, partition)
        failed = await batches.finish()
        in_added_order = [record for mine in by_partition.values() for record in mine]
        return [in_added_order[index] for index in sorted(failed)]
