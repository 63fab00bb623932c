"""The order agents: one per order topic, each a short loop that hands batches to the handler.

Every event first passes the ``OffsetGuard`` (``streams/offsets.py``): only the next offset of
its partition is processed; a stale or repeated one is dropped, a jump is sought back.

Faust acks an event when its stream moves on, when the agent body raises (robinhood/faust
#604) and when the stream closes at shutdown; none of these means "committed in PostgreSQL".
So every batch is *disowned* as soon as ``take_events`` yields it (Faust's own acks become
no-ops) and *settled* (the guard's frontier may move past it, so the offset may be committed)
only after the handler reports its effect durable. A batch that is never settled is
redelivered; the engine's event dedup and order ledger make that harmless.

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

from service import metrics
from service.config import Settings
from service.domain.commands import OrderEventKind
from streams.handler import Incoming, OrderEventHandler
from streams.kafka_transport import RawSchema
from streams.offsets import OffsetGuard, Verdict
from streams.records import KIND_LABELS, DeadLetter, TopicKinds

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


def settle(guard: OffsetGuard, events: Sequence[EventT[Any]]) -> None:
    """Their effect committed: the guard may let the committed offsets move past them."""
    by_partition: dict[Any, list[int]] = {}
    for event in events:
        message = event.message
        by_partition.setdefault(message.tp, []).append(message.offset)
    for tp, offsets in by_partition.items():
        guard.settle(tp, offsets)


async def admit(
    app: faust.App, guard: OffsetGuard, kind: OrderEventKind, events: Sequence[EventT[Any]]
) -> list[EventT[Any]]:
    """The events that continue their partitions; jumps are sought back where they should be."""
    admitted = []
    seeks: dict[Any, int] = {}
    for event in events:
        message = event.message
        decision = guard.admit(message.tp, message.offset)
        verdict = decision.verdict
        if verdict is Verdict.ADMIT:
            admitted.append(event)
        elif decision.seek_to is not None:  # SEEK or RESEEK
            seeks[message.tp] = decision.seek_to
            if verdict is Verdict.SEEK:
                metrics.CONSUMER_OFFSET_JUMPS.labels(topic=KIND_LABELS[kind]).inc()
                log.info(
                    "offset jump on %s[%d]: got %d, expected %d; seeking back",
                    message.topic,
                    message.partition,
                    message.offset,
                    decision.seek_to,
                )
        elif verdict is Verdict.ADMIT_AFTER_GAP:
            assert decision.gap is not None
            metrics.CONSUMER_OFFSET_GAPS.labels(topic=KIND_LABELS[kind]).inc()
            log.warning(
                "%s[%d] has no records at offsets %d..%d (compaction, transaction markers or "
                "retention): going on at %d",
                message.topic,
                message.partition,
                decision.gap[0],
                decision.gap[1] - 1,
                message.offset,
            )
            seeks.pop(message.tp, None)
            admitted.append(event)
    for tp, offset in seeks.items():  # once per partition, after the last hand-off seen
        if guard.expected(tp) == offset:  # not overtaken by an admitted event
            await app.consumer.seek(tp, offset)
            guard.sought(tp, offset)
    return admitted


class BatchRunner:
    """Runs an agent's batches, up to ``depth`` at a time, and settles each when it is done.

    Two batches in flight let the next one decode and queue while the engine commits the
    previous one (the engine runs two transactions at once and takes order locks in arrival
    order). A batch that the handler gave up on (stopping while the database is down) is never
    settled: its offsets stay uncommitted and it is redelivered.
    """

    def __init__(
        self, app: faust.App, guard: OffsetGuard, handler: OrderEventHandler, depth: int
    ) -> None:
        self._app = app
        self._guard = guard
        self._handler = handler
        self._depth = max(depth, 1)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def blocked(self) -> bool:
        """Every batch it may run is in flight: its agent waits before it takes more events."""
        return len(self._tasks) >= self._depth

    async def submit(self, kind: OrderEventKind, events: Sequence[EventT[Any]]) -> None:
        disown(events)
        events = await admit(self._app, self._guard, kind, events)
        if not events:
            return
        while len(self._tasks) >= self._depth:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._run(kind, list(events)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, kind: OrderEventKind, events: list[EventT[Any]]) -> None:
        try:
            if await self._handler.handle([incoming(kind, event) for event in events]):
                settle(self._guard, events)
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
    app: faust.App,
    settings: Settings,
    guard: OffsetGuard,
    handler: OrderEventHandler,
    *,
    depth: int = 2,
) -> dict[str, BatchRunner]:
    """One agent per order topic, each with its own runner (``depth`` batches in flight);
    the runners by topic."""
    window_s = max(settings.batch_window_ms / 1000, MIN_TAKE_WINDOW_S)
    runners = {}
    for kind, name in TopicKinds.from_settings(settings).pairs():
        runner = BatchRunner(app, guard, handler, depth)
        body = order_agent(kind, runner, settings.batch_max_size, window_s)
        app.agent(raw_topic(app, name, settings), name=f"orders-{kind.value}", concurrency=1)(body)
        runners[name] = runner
    return runners
