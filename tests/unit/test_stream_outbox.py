"""The relay's batching: partitions like the default partitioner, marks only the acked prefix."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from db.outbox_sql import OutboxRow, advisory_key
from service.config import Settings
from streams.kafka_batches import murmur2, partition_for
from streams.outbox import OutboxRelay


def test_partition_for_matches_the_default_partitioner() -> None:
    partitions = list(range(8))
    for key in (b"order-1", b"prod-123:var-456", b"", b"x" * 300):
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_murmur2_matches_aiokafkas() -> None:
    rng = random.Random(7)
    keys = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(80))) for _ in range(2_000)]
    keys += [b"", b"a", b"order-1", "ordre-é".encode(), b"\xff" * 37]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_the_lock_key_is_stable_and_fits_a_bigint() -> None:
    assert advisory_key("inventory-service") == advisory_key("inventory-service")
    assert advisory_key("a") != advisory_key("b")
    assert 0 < advisory_key("inventory-service") < 2**63


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: Any) -> object | None:
        if len(self.items) >= self.capacity:
            return None
        self.items.append((key, value))
        return object()


class FakeProducer:
    def __init__(
        self, capacity: int, fail_batch: int | None = None, refuse_batch: int | None = None
    ) -> None:
        self.capacity = capacity
        self.fail_batch = fail_batch  # the broker fails it
        self.refuse_batch = refuse_batch  # send_batch raises
        self.refused: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if self.refuse_batch == len(self.sent) + len(self.refused):
            self.refused.append((partition, batch.items))
            raise ConnectionError("no metadata")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.fail_batch == len(self.sent):
            future.set_exception(ConnectionError("broker gone"))
        else:
            future.set_result(object())
        self.sent.append((topic, partition, batch.items))
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}


def relay_with(producer: FakeProducer) -> OutboxRelay:
    relay = OutboxRelay(Settings())
    relay._producer = producer  # type: ignore[assignment]
    return relay


def rows(n: int, keys: int) -> list[OutboxRow]:
    return [OutboxRow(i, "t", f"k{i % keys}", f'{{"i":{i}}}'.encode()) for i in range(n)]


async def test_rows_go_out_in_order_per_partition_in_batches() -> None:
    producer = FakeProducer(capacity=2)
    assert await relay_with(producer)._send(rows(9, keys=3)) == 9
    per_partition: dict[int, list[bytes]] = {}
    for topic, partition, items in producer.sent:
        assert topic == "t" and 1 <= len(items) <= 2
        per_partition.setdefault(partition, []).extend(v for _, v in items)
    for values in per_partition.values():
        order = [int(v.decode().split(":")[1].rstrip("}")) for v in values]
        assert order == sorted(order)
    assert sum(len(v) for v in per_partition.values()) == 9


async def test_only_the_prefix_before_a_failed_batch_counts_as_sent() -> None:
    producer = FakeProducer(capacity=100, fail_batch=1)
    batch = rows(12, keys=6)
    sent = await relay_with(producer)._send(batch)
    assert len(producer.sent) >= 2
    failed_key = producer.sent[1][2][0][0].decode()
    first_failed = next(i for i, row in enumerate(batch) if row.key == failed_key)
    assert sent == first_failed < len(batch)


async def test_a_refused_batch_ends_the_prefix_and_its_partition_sends_no_more() -> None:
    producer = FakeProducer(capacity=2, refuse_batch=1)
    batch = rows(12, keys=1)  # one key: one partition, six batches
    sent = await relay_with(producer)._send(batch)
    assert sent == 2  # the first batch
    assert len(producer.sent) == 1 and len(producer.refused) == 1
