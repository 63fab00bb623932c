"""The pipeline bench's load in C: librdkafka (confluent-kafka) publishes the orders and reads
their results.

The bench shares the machine's two cores with the worker, PostgreSQL and the broker. Its
Python client (aiokafka: one ``send`` and one record object per event, in the bench's event
loop) took 40-60 µs of CPU per order, an eighth of what the whole pipeline used; librdkafka
does the same work in its own C threads for about half of that (``docs/architecture.md``,
Performance notes). The baseline is driven the same way: pgbench, in C. An upstream service
publishes from its own machines; the bench cannot, so it takes as little as it can.

The producer uses the Java client's partitioner (``murmur2_random``, as aiokafka and
``streams/kafka_batches.py`` do), so every order lands on the partition any other producer of
ours would pick. The reader is assigned every partition of the results topic at its end
offset, taken before the first publish, and keeps the raw values whose key has the run's
prefix; nothing is decoded while the clock runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import confluent_kafka as ck

from service.config import Settings
from service.devtools import load_generator as loadgen

POLL_S = 0.05
FETCH_WAIT_MS = 20  # the reader's longest wait for a fetch (librdkafka's default is 500)


class LoadError(RuntimeError):
    """The broker refused an event, or the results did not all arrive in time."""


def producer(bootstrap: str) -> ck.Producer:
    """A connected producer: acks from every replica, no idempotence (Tansu lacks it)."""
    made = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "partitioner": "murmur2_random",
        }
    )
    made.list_topics(timeout=10)  # connected: the first produce is not the one that waits
    return made


@dataclass
class ResultReader:
    """Reads one topic from its current end in a thread of its own until ``count`` values with
    keys starting ``prefix`` arrived; ``finished_at`` is ``time.perf_counter()`` then."""

    bootstrap: str
    topic: str
    prefix: bytes
    count: int
    values: list[bytes] = field(default_factory=list)
    finished_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        consumer = ck.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "inventory-bench-reader",  # required; nothing joins or commits
                "enable.auto.commit": False,
                "fetch.wait.max.ms": FETCH_WAIT_MS,
            }
        )
        partitions = consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        ends = []
        for partition in sorted(partitions):
            _, high = consumer.get_watermark_offsets(
                ck.TopicPartition(self.topic, partition), timeout=10
            )
            ends.append(ck.TopicPartition(self.topic, partition, high))
        consumer.assign(ends)
        self._thread = threading.Thread(
            target=self._read, args=(consumer,), name="bench-results", daemon=True
        )
        self._thread.start()

    def _read(self, consumer: ck.Consumer) -> None:
        try:
            while len(self.values) < self.count and not self._stop.is_set():
                for message in consumer.consume(num_messages=5_000, timeout=POLL_S):
                    key = message.key()
                    if message.error() is None and key is not None and key.startswith(self.prefix):
                        self.values.append(message.value())
            if len(self.values) >= self.count:
                self.finished_at = time.perf_counter()
        finally:
            consumer.close()

    def wait(self, within_s: float) -> float:
        """When the last value arrived; raises if they did not all arrive within ``within_s``."""
        assert self._thread is not None, "start() first"
        self._thread.join(within_s)
        if self.finished_at is None:
            self._stop.set()
            self._thread.join()
            raise LoadError(f"{len(self.values)} of {self.count} results within {within_s:.0f}s")
        return self.finished_at


def publish(
    made: ck.Producer, settings: Settings, events: Sequence[loadgen.OrderEvent], within_s: float
) -> None:
    """Publish ``events`` in order and wait until the broker acknowledged every one."""
    refused: list[str] = []

    def delivered(error: ck.KafkaError | None, _: ck.Message) -> None:
        if error is not None:
            refused.append(str(error))

    for event in events:
        topic = loadgen.topic_for(settings, event.kind)
        while True:
            try:
                made.produce(topic, event.value, event.key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                made.poll(POLL_S)
    left = made.flush(within_s)
    if refused or left:
        raise LoadError(f"{len(refused)} events refused ({refused[:3]}), {left} unacknowledged")
