"""Faust's aiokafka transport, with a configurable fetch wait and offsets kept by ``OffsetGuard``.

**Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka
answers a fetch as soon as data arrives, so the wait costs nothing there; Tansu (the embedded
broker) holds every fetch for the full wait, which put ~750 ms on each hop of the dev and test
stacks (order event → worker, stock-changed → cache, reservation → expiry table).
``Settings.kafka_fetch_max_wait_ms`` sets it; the embedded stack uses a short one.

**Offsets of the guarded topics** (the order topics; ``streams/offsets.py`` says why). The
consumer tells the guard where each partition was sought to after every rebalance
(``perform_seek``, which Faust calls before it resumes the flow) and forgets revoked
partitions; its commits take the guard's frontier instead of Faust's acked-offset lists, and
Faust's gap filling is off for those topics. Every other topic keeps Faust's own bookkeeping.
What this relies on in Faust, and the tests that would catch a change: docs/pitfalls.md.

**Seeks run in the consumer's thread** (``_seek``): Faust calls aiokafka's seek from the
app's thread, racing the consumer thread's fetch (a crashed Fetcher, seen in a rolling restart).

**The per-message hand-off race** (``streams/hand_off.py``): the drain loop's
``wait_first(callback(message), suspend_flow.wait())`` runs with one new task per message
instead of mode's four, the callback still in a task of its own. An earlier version ran the
callback *eagerly*, in the drain loop's task; it bypassed the race that drops messages fetched
before a rebalance (faust-streaming #221, PR #223) and lost events whenever workers joined or
left. ``tests/chaos/test_scaling.py`` fails if that comes back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Set
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.hand_off import LeanHandOff
from streams.offsets import OffsetGuard


class GuardedConsumer(LeanHandOff, faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose guarded topics commit only what ``guard`` settled."""

    guard: OffsetGuard  # set by app_class

    async def perform_seek(self) -> None:
        await super().perform_seek()
        guarded = [tp for tp in self.assignment() if self.guard.guards(tp.topic)]
        committed = {tp: self._read_offset.get(tp) for tp in guarded}
        unknown = [tp for tp, offset in committed.items() if offset is None]
        # nothing committed yet: consumption starts at the log's start
        earliest = await self.earliest_offsets(*unknown) if unknown else {}
        positions = {tp: committed[tp] or earliest.get(tp) or 0 for tp in guarded}
        for tp, position in positions.items():
            self.guard.assign(tp, position)
        # Faust resumed these partitions before its seek, and its flow may already be active
        # (table recovery): what arrived before the guard knew the position was dropped.
        # Seek again so that it comes back.
        for tp, position in positions.items():
            await self.seek(tp, position)

    async def _seek(self, partition: TP, offset: int) -> None:
        # Faust seeks from the app's thread, but the aiokafka consumer lives in the consumer
        # thread: its seek deletes the partition's fetched records while that thread's
        # ``fetched_records`` walks them (KeyError, the Fetcher crashes and the worker stops
        # consuming: faust-streaming's aiokafka issue 19). Run it in the consumer's thread.
        thread = self._thread

        async def seek_there() -> None:
            thread.seek(partition, offset)

        await thread.call_thread(seek_there)

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        self.guard.forget(revoked)
        await super().on_partitions_revoked(revoked)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in self.guard.assigned():
            if topics is None or tp in topics or tp.topic in topics:  # type: ignore[attr-defined]
                yield tp  # type: ignore[misc]

    def _new_offset(self, tp: TP) -> int | None:
        if self.guard.guards(tp.topic):
            return self.guard.committable(tp)
        return super()._new_offset(tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if not self.guard.guards(tp.topic):  # the guard confirms gaps itself
            await super()._add_gap(tp, offset_from, offset_to)


class RawSchema(faust.Schema[bytes, bytes]):
    """Keys and values exactly as the bytes on the wire (None for a null key or value)."""

    def __init__(self) -> None:
        super().__init__(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    def loads_key(self, app: Any, message: Message, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Message, **_: Any) -> Any:
        return message.value


def app_class(fetch_max_wait_ms: int | None, guard: OffsetGuard) -> type[faust.App]:
    """A Faust App whose consumer keeps ``guard``'s offsets and, if given, waits that long."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            if fetch_max_wait_ms is not None:
                # read by AIOKafkaConsumer.start() when it builds its fetcher
                consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class AppConsumer(GuardedConsumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    AppConsumer.guard = guard

    class Transport(faust_aiokafka.Transport):
        Consumer = AppConsumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

        @functools.cached_property
        def _event_type(self) -> Any:
            return self.conf.Event

        def create_event(self, key: Any, value: Any, headers: Any, message: Message) -> Any:
            return self._event_type(self, key, value, headers, message)

        def on_init_dependencies(self) -> Any:
            dependencies = super().on_init_dependencies()
            # Faust's Monitor keeps per-event statistics for its web views (off here) and runs
            # on every event; the service's Prometheus metrics are what operators read. A bare
            # Sensor takes its place: with no sensor at all, Faust warns "Missing sensor state"
            # at every rebalance.
            self.sensors.remove(self.monitor)
            self.sensors.add(faust.Sensor())
            return dependencies

    return App
