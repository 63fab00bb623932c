"""Faust's aiokafka transport, with a configurable fetch wait and a cheaper hand-off per message.

**Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka
answers a fetch as soon as data arrives, so the wait costs nothing there; Tansu (the embedded
broker) holds every fetch for the full wait, which put ~750 ms on each hop of the dev and test
stacks (order event → worker, stock-changed → cache, reservation → expiry table).
``Settings.kafka_fetch_max_wait_ms`` sets it; the embedded stack uses a short one.

**Hand-off.** The consumer's drain loop hands every message to the conductor with
``wait_first(callback(message), suspend_flow.wait())`` so that a hand-off blocked on a full
stream buffer is abandoned when a rebalance suspends the flow. ``wait_first`` wraps each
argument, plus the service's stopped and crashed events, in a task: four tasks and an
``asyncio.wait`` per message, a sixth of the worker's CPU in ``bench/pipeline.py``. Almost
every hand-off completes without ever suspending (the buffer has room), so ``EagerWaitFirst``
runs the first coroutine up to its first suspension in the caller's task and falls back to
``wait_first``'s race only when it does suspend (what Python 3.12's eager tasks do).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Coroutine, Generator
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message
from mode import Service
from mode.services import WaitArgT, WaitResults


async def _resumed(coro: Coroutine[Any, Any, Any], awaiting: Any) -> Any:
    return await _resume(coro, awaiting)  # a native coroutine, which wait_first accepts


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], awaiting: Any) -> Generator[Any, Any, Any]:
    """Drive ``coro`` on from its first suspension, where it yielded ``awaiting``.

    Whatever the driving task sends or throws (a cancellation) is passed through to ``coro``,
    exactly as if the task had run it from the start.
    """
    while True:
        try:
            sent = yield awaiting
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation included: it belongs to coro
            try:
                awaiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                awaiting = coro.send(sent)
            except StopIteration as stop:
                return stop.value


def _close(coros: tuple[WaitArgT, ...]) -> None:
    """Close coroutines that will never run, so they are not reported as never awaited."""
    for coro in coros:
        if isinstance(coro, types.CoroutineType):
            coro.close()


class EagerWaitFirst(Service):
    """A service whose ``wait_first`` runs its first coroutine eagerly (mixed into the consumer)."""

    async def wait_first(
        self,
        *coros: WaitArgT,
        timeout: Any = None,  # noqa: ASYNC109 (mode's signature)
    ) -> WaitResults:
        first, rest = coros[0], coros[1:]
        # the exact type, not the Coroutine ABC: this runs for every message
        if not isinstance(first, types.CoroutineType):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            awaiting = first.send(None)
        except StopIteration as stop:
            _close(rest)
            if self._stopped.is_set() or self._crashed.is_set():
                return WaitResults([], [], True)
            return WaitResults([first], [stop.value], False)
        except BaseException:
            _close(rest)
            raise
        return await super().wait_first(_resumed(first, awaiting), *rest, timeout=timeout)


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


def app_class(fetch_max_wait_ms: int | None) -> type[faust.App]:
    """A Faust App whose consumer hands messages off eagerly and, if given, waits that long."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            if fetch_max_wait_ms is not None:
                # read by AIOKafkaConsumer.start() when it builds its fetcher
                consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class EagerConsumer(EagerWaitFirst, faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = EagerConsumer

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
            # on every event; the service's Prometheus metrics are what operators read.
            self.sensors.remove(self.monitor)
            return dependencies

    return App
