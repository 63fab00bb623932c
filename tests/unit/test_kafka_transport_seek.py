"""``GuardedConsumer._seek`` runs aiokafka's seek in the consumer's own thread.

aiokafka's seek deletes the partition's fetched records; called from the app's thread while
the consumer thread walks them in ``fetched_records`` it raised KeyError and crashed Faust's
Fetcher in a rolling restart (tests/chaos/test_scaling.py). Here a real ``mode`` thread
stands in for Faust's consumer thread: the seek must happen on it, never on the caller's.
"""

from __future__ import annotations

import threading
from typing import Any

from mode.threads import QueueServiceThread

from streams.kafka_transport import GuardedConsumer


class ConsumerThread(QueueServiceThread):
    def __init__(self) -> None:
        super().__init__()
        self.seeks: list[tuple[Any, int, int]] = []

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset, threading.get_ident()))


async def test_a_seek_runs_in_the_consumer_thread() -> None:
    thread = ConsumerThread()
    consumer = GuardedConsumer.__new__(GuardedConsumer)  # only ``_thread`` is used
    consumer._thread = thread
    await thread.start()
    try:
        await consumer._seek("tp", 42)  # type: ignore[arg-type]
    finally:
        await thread.stop()
    [(partition, offset, ident)] = thread.seeks
    assert (partition, offset) == ("tp", 42)
    assert ident != threading.get_ident()
    assert ident == thread._thread.ident  # type: ignore[union-attr]
