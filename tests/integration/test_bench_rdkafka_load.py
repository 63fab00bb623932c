"""The pipeline bench's librdkafka load (``bench/rdkafka_load.py``) against the test broker:
orders land where every other producer of ours puts them, and the reader counts only the
run's own results, from the moment it started, and says when they do not all come."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import rdkafka_load
from service.config import Settings
from service.devtools.load_generator import EventSource, LoadConfig
from streams.app import ensure_topics
from streams.kafka_batches import partition_for


def isolated(settings: Settings) -> Settings:
    return settings.isolated(f"rdk-{uuid.uuid4().hex[:6]}", topic_partitions=4)


async def results_topic(settings: Settings) -> tuple[Settings, str]:
    """Settings of a run of their own, and its results topic, created."""
    settings = isolated(settings)
    await ensure_topics(settings, (settings.topic_reservations,))
    return settings, settings.topic_reservations


async def read_all(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        seen: list[tuple[int, bytes]] = []
        async with asyncio.timeout(30):
            while len(seen) < count:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    seen += [(tp.partition, r.key or b"") for r in records]
        return seen
    finally:
        await consumer.stop()


@pytest.mark.stack
async def test_orders_land_on_the_partition_of_the_java_partitioner(settings: Settings) -> None:
    settings = isolated(settings)
    await ensure_topics(settings, settings.order_topics)
    config = LoadConfig(count=60, created=1, paid=0, cancelled=0, run_id="p", seed=7)
    events = list(EventSource(config))

    producer = rdkafka_load.producer(settings.kafka_bootstrap)
    await asyncio.to_thread(rdkafka_load.publish, producer, settings, events, 30)

    landed = await read_all(settings, settings.topic_order_created, len(events))
    assert sorted(key for _, key in landed) == sorted(e.key for e in events)
    assert len({partition for partition, _ in landed}) > 1
    for partition, key in landed:
        assert partition == partition_for(key, range(4)), key


@pytest.mark.stack
async def test_the_reader_counts_the_runs_results_published_after_it_started(
    settings: Settings,
) -> None:
    settings, topic = await results_topic(settings)
    earlier = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await earlier.start()
    try:
        for n in range(5):  # before the reader starts: not counted, though the prefix matches
            await earlier.send_and_wait(topic, b"old", key=f"RUN-{n}".encode())

        reader = rdkafka_load.ResultReader(settings.kafka_bootstrap, topic, b"RUN-", 3)
        await asyncio.to_thread(reader.start)
        await earlier.send_and_wait(topic, b"other", key=b"OTHER-1")
        for n in range(3):
            await earlier.send_and_wait(topic, f"new-{n}".encode(), key=f"RUN-{n}".encode())
    finally:
        await earlier.stop()

    await asyncio.to_thread(reader.wait, 30)
    assert sorted(reader.values) == [b"new-0", b"new-1", b"new-2"]


@pytest.mark.stack
async def test_the_reader_says_how_many_results_came_when_some_never_do(
    settings: Settings,
) -> None:
    settings, topic = await results_topic(settings)
    reader = rdkafka_load.ResultReader(settings.kafka_bootstrap, topic, b"NEVER-", 2)
    await asyncio.to_thread(reader.start)

    with pytest.raises(rdkafka_load.LoadError, match="0 of 2 results"):
        await asyncio.to_thread(reader.wait, 1)
