"""Sending many records to Kafka at once: one producer setup, one per-partition batch sender.

The outbox relay (``streams/outbox.py``) and the expiry changelog writer
(``streams/expiry/changelog.py``) send hundreds of small records per round. Both fill the
producer's batches themselves, one per partition, and wait for all of them together, through
``PartitionBatches``; each keeps its own rule about what may share a batch and what a failure
means. ``partition_for`` is where the default partitioner puts a key.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder


def create_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        # Tansu rejects InitProducerId; a partition's order comes from aiokafka muting the
        # partition until its batch in flight is acknowledged
        enable_idempotence=False,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


class RecordTooLarge(ValueError):
    """A record that does not fit in an empty producer batch (``max_batch_size``)."""


Slot = tuple[str, int]  # topic, partition


class PartitionBatches:
    """Records packed into as few producer batches per partition as fit.

    ``add`` appends a record to its partition's open batch and hands the batch to the producer
    once it is full, so a partition's batches go out in the order its records were added.
    ``seal`` hands a partition's open batch over early (its next record starts a new batch).
    ``finish`` hands over the rest, waits for the broker and answers which records failed.
    One instance sends one round of records.

    A batch the producer refuses outright (``send_batch`` raising) fails with every record of
    its partition added after it: those are never sent, so none can land ahead of the refused
    ones.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._open: dict[Slot, tuple[BatchBuilder, list[int]]] = {}
        self._sent: list[tuple[asyncio.Future[object], list[int]]] = []
        self._refused: dict[Slot, Exception] = {}
        self._failed: dict[int, BaseException] = {}
        self._added = 0

    async def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        """Add the next record; ``finish`` names it by its position among the added ones."""
        index, self._added = self._added, self._added + 1
        slot = (topic, partition)
        opened = self._open.get(slot)
        if opened is not None:
            batch, members = opened
            if batch.append(key=key, value=value, timestamp=None) is not None:
                members.append(index)
                return
            await self.seal(topic, partition)  # full: the partition's next batch follows it
        refusal = self._refused.get(slot)
        if refusal is not None:
            self._failed[index] = refusal
            return
        batch = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            raise RecordTooLarge(f"a record for {topic}[{partition}] exceeds a producer batch")
        self._open[slot] = (batch, [index])

    async def seal(self, topic: str, partition: int) -> None:
        """Hand the partition's open batch to the producer now, if it has one."""
        opened = self._open.pop((topic, partition), None)
        if opened is None:
            return
        batch, members = opened
        try:
            future = await self._producer.send_batch(batch, topic, partition=partition)
        except Exception as exc:
            self._refused[(topic, partition)] = exc
            self._failed.update(dict.fromkeys(members, exc))
            return
        self._sent.append((future, members))

    async def finish(self) -> dict[int, BaseException]:
        """Send the open batches and wait for the broker; the failed records by index."""
        for topic, partition in list(self._open):
            await self.seal(topic, partition)
        outcomes = await asyncio.gather(
            *(future for future, _ in self._sent), return_exceptions=True
        )
        for outcome, (_, members) in zip(outcomes, self._sent, strict=True):
            if isinstance(outcome, BaseException):
                self._failed.update(dict.fromkeys(members, outcome))
        return self._failed


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The Java client's (and aiokafka's) default partitioner: murmur2 of the key."""
    index = murmur2(key) & 0x7FFFFFFF
    return partitions[index % len(partitions)]


_M = 0x5BD1E995
_U32 = 0xFFFFFFFF
_WORD = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """aiokafka's ``murmur2`` (the Java client's), reading the key four bytes at a time.

    The relay hashes every row's key, and aiokafka's byte-at-a-time loop took twice as long.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in _WORD.iter_unpack(data[:body]):
        k = (k * _M) & _U32
        k = ((k ^ (k >> 24)) * _M) & _U32
        h = ((h * _M) & _U32) ^ k
    tail = length & 3
    if tail:
        if tail == 3:
            h ^= data[body + 2] << 16
        if tail >= 2:
            h ^= data[body + 1] << 8
        h = ((h ^ data[body]) * _M) & _U32
    h = ((h ^ (h >> 13)) * _M) & _U32
    return h ^ (h >> 15)
