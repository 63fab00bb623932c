"""The expiry table's changelog writer, against a fake producer."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.serializers import codecs

from service.config import Settings
from streams.expiry.changelog import ChangelogWriter, Record, encode


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, *, key: bytes, value: bytes | None, timestamp: None) -> object | None:
        if len(self.records) >= self.capacity:
            return None  # full
        self.records.append((key, value))
        return object()


class FakeProducer:
    def __init__(
        self,
        fail_partitions: frozenset[int] = frozenset(),
        *,
        refuse_partitions: frozenset[int] = frozenset(),
        capacity: int = 10_000,
    ) -> None:
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []
        self.fail_partitions = fail_partitions  # the broker fails the batch
        self.refuse_partitions = refuse_partitions  # send_batch raises
        self.capacity = capacity
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if partition in self.refuse_partitions:
            raise RuntimeError("no metadata for the partition")
        self.sent.append((topic, partition, batch.records))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if partition in self.fail_partitions:
            future.set_exception(RuntimeError("broker said no"))
        else:
            future.set_result(None)
        return future


async def writer(producer: FakeProducer) -> ChangelogWriter:
    w = ChangelogWriter(Settings(), lambda: "app-expiry-schedule-changelog")
    w._producer_factory = lambda _: producer  # type: ignore[assignment,return-value]
    await w.start()
    return w


def test_records_are_encoded_as_fausts_json_codec_reads_them() -> None:
    key, value = encode("order-1", 1714564800.5)
    assert codecs.loads("json", key) == "order-1"
    assert value is not None and codecs.loads("json", value) == 1714564800.5
    assert encode("order-1", None) == (key, None)  # a tombstone


def test_records_are_the_bytes_fausts_json_codec_writes() -> None:
    for order_id, expires_at in [
        ("order-1", 1714564800.5),
        ('ordre-é-\u2603-"q"\\', 1714564800.123456),
        ("o", 1e16),
        ("o", 0.0),
        ("o", 1714564800),
    ]:
        assert encode(order_id, expires_at) == (
            codecs.dumps("json", order_id),
            codecs.dumps("json", expires_at),
        )


async def test_each_partition_ends_with_a_batch_of_one() -> None:
    producer = FakeProducer()
    w = await writer(producer)
    records: list[Record] = [(i % 2, f"o{i}", float(i)) for i in range(7)] + [(3, "solo", None)]
    assert await w.write(records) == []
    by_partition: dict[int, list[int]] = {}
    for topic, partition, batch in producer.sent:
        assert topic == "app-expiry-schedule-changelog"
        by_partition.setdefault(partition, []).append(len(batch))
    assert by_partition == {0: [3, 1], 1: [2, 1], 3: [1]}
    keys = [codecs.loads("json", k) for _, p, batch in producer.sent if p == 0 for k, _ in batch]
    assert keys == ["o0", "o2", "o4", "o6"]  # in order


async def test_large_writes_are_split_into_batches_that_fit() -> None:
    producer = FakeProducer(capacity=3)
    w = await writer(producer)
    assert await w.write([(0, f"o{i}", 1.0) for i in range(8)]) == []
    assert [len(batch) for _, _, batch in producer.sent] == [3, 3, 1, 1]


async def test_failed_batches_are_returned() -> None:
    producer = FakeProducer(fail_partitions=frozenset({1}))
    w = await writer(producer)
    records: list[Record] = [(0, "a", 1.0), (1, "b", 2.0), (1, "c", None)]
    assert sorted(await w.write(records)) == sorted(records[1:])


async def test_a_refused_batch_fails_its_partition_and_the_others_go_on() -> None:
    producer = FakeProducer(refuse_partitions=frozenset({1}))
    w = await writer(producer)
    records: list[Record] = [(1, "a", 1.0), (0, "b", 2.0), (1, "c", 3.0), (0, "d", None)]
    assert sorted(await w.write(records)) == sorted([records[0], records[2]])
    assert {partition for _, partition, _ in producer.sent} == {0}


async def test_a_stopped_writer_returns_everything() -> None:
    producer = FakeProducer()
    w = await writer(producer)
    await w.stop()
    assert await w.write([(0, "a", 1.0)]) == [(0, "a", 1.0)]
