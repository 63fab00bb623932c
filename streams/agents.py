"""The order agents: one per order topic, each a short loop that hands batches to the handler.

Faust acks an event when its stream moves on, when the agent body raises (robinhood/faust
#604) and when the stream closes at shutdown; none of these means "committed in PostgreSQL".
So every batch is *disowned* as soon as ``take_events`` yields it (Faust's own acks become
no-ops) and *settled* (acked for real, so the offset may be committed) only after the handler
reports its effect durable. A batch that is never settled is redelivered; the engine's event
dedup and order ledger make that harmless.

``concurrency=1`` per agent (faust-streaming #606 commits past in-flight events otherwise);
throughput comes from batching, partitions and two batches in flight per agent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from service.config import Settings
from service.domain.commands import OrderEventKind
from streams.handler import Incoming, OrderEventHandler
from streams.kafka_transport import RawSchema
from streams.records import DeadLetter

log = logging.getLogger(__name__)

# A take() window shorter than this only makes tiny batches under moderate load.
MIN_TAKE_WINDOW_S = 0.05


def raw_topic(app: faust.App, name: str, settings: Settings) -> faust.TopicT:
    return app.topic(name, schema=RawSchema(), partitions=settings.topic_partitions)


class TopicDeadLetterSink:
    """Publishes dead letters with Faust's producer, keyed like the event they replace."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._topic = app.topic(
            settings.topic_dlq,
            key_type=bytes,
            key_serializer="raw",
            value_serializer="json",
            partitions=settings.topic_partitions,
        )

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        pending = [
            await self._topic.send(
                key=None if letter.key_base64 is None else _key_bytes(letter), value=letter
            )
            for letter in letters
        ]
        await asyncio.gather(*pending)


def _key_bytes(letter: DeadLetter) -> bytes:
    return base64.b64decode(letter.key_base64 or "")


def incoming(kind: OrderEventKind, event: EventT[Any]) -> Incoming:
    # the raw serializer hands the bytes through untouched (None for a null key/value)
    message = event.message
    return Incoming(
        kind=kind,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
    )


def disown(events: Sequence[EventT[Any]]) -> None:
    """Make Faust's own acks of these events no-ops; ``settle`` acks them once committed.

    ``Message.ack`` only tells the consumer (which commits the offset) when the message is
    not yet marked acked. Marking it at once keeps the acks that ``take_events`` does when
    the loop moves on, or when the stream closes at shutdown, away from the consumer.
    """
    for event in events:
        event.message.acked = True


def settle(app: faust.App, events: Sequence[EventT[Any]]) -> None:
    """Ack the events for real: their effect committed, the offsets may be committed."""
    consumer = app.consumer
    for event in events:
        message = event.message
        message.acked = False
        consumer.ack(message)


class BatchRunner:
    """Runs an agent's batches, up to ``depth`` at a time, and settles each when it is done.

    Two batches in flight let the next one decode and queue while the engine commits the
    previous one (the engine runs two transactions at once and takes order locks in arrival
    order). A batch that the handler gave up on (stopping while the database is down) is never
    settled: its offsets stay uncommitted and it is redelivered.
    """

    def __init__(self, app: faust.App, handler: OrderEventHandler, depth: int) -> None:
        self._app = app
        self._handler = handler
        self._depth = max(depth, 1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, kind: OrderEventKind, events: Sequence[EventT[Any]]) -> None:
        disown(events)
        while len(self._tasks) >= self._depth:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._run(kind, list(events)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, kind: OrderEventKind, events: list[EventT[Any]]) -> None:
        try:
            if await self._handler.handle([incoming(kind, event) for event in events]):
                settle(self._app, events)
        except Exception:  # never lose the batch silently: it stays unacked
            log.exception("settling a batch of %d %s events failed", len(events), kind.value)


AgentBody = Callable[[StreamT[Any]], Coroutine[Any, Any, None]]


def order_agent(
    kind: OrderEventKind, runner: BatchRunner, batch_size: int, window_s: float
) -> AgentBody:
    async def consume(stream: StreamT[Any]) -> None:
        # take_events is on faust.Stream, not on the StreamT protocol
        batches = cast(Any, stream).take_events(batch_size, within=window_s)
        async for events in batches:
            await runner.submit(kind, events)

    return consume


def register_order_agents(
    app: faust.App, settings: Settings, handler: OrderEventHandler, *, depth: int = 2
) -> list[BatchRunner]:
    """One agent per order topic, each with its own runner (``depth`` batches in flight)."""
    window_s = max(settings.batch_window_ms / 1000, MIN_TAKE_WINDOW_S)
    runners = []
    for kind, name in (
        (OrderEventKind.CREATED, settings.topic_order_created),
        (OrderEventKind.PAID, settings.topic_order_paid),
        (OrderEventKind.CANCELLED, settings.topic_order_cancelled),
    ):
        runner = BatchRunner(app, handler, depth)
        body = order_agent(kind, runner, settings.batch_max_size, window_s)
        app.agent(raw_topic(app, name, settings), name=f"orders-{kind.value}", concurrency=1)(body)
        runners.append(runner)
    return runners
