"""One batch of order events: decode, hand to the engine, DLQ what cannot be used.

The agents only translate Faust events into ``Incoming`` and call ``OrderEventHandler.handle``;
everything here runs without Kafka, so the unit tests drive it with fakes.

``handle`` never raises: Faust acknowledges a batch when the agent body raises (robinhood/faust
#604), so an escaped exception would silently skip events. It returns True once every effect of
the batch is durable (engine committed, dead letters published) and the batch may be acked, or
False when the worker began stopping before that: the caller must then leave the batch unacked
so that it is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from service import metrics
from service.domain.commands import Command, OrderCommand, OrderEventKind
from service.domain.errors import InventoryError, Unavailable
from service.domain.results import OrderResult, StockLevel, TransferResult
from service.domain.validation import Limits
from service.retry import Backoff, Stopping, retrying
from streams.records import KIND_LABELS, DeadLetter, InvalidEvent, dead_letter, decode_order_event

log = logging.getLogger(__name__)

EngineResult = OrderResult | StockLevel | TransferResult | InventoryError


class Executor(Protocol):
    async def execute_many(self, cmds: Sequence[Command]) -> list[EngineResult]: ...


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish and wait until the broker has them; raise when it could not."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """An order event as it came off the topic, before anything was trusted."""

    kind: OrderEventKind
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Tally:
    """Outcomes since the last summary line (events/s, reserved, rejected...)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    events: int = 0

    def take(self) -> tuple[int, Counter[str]]:
        taken = self.events, self.outcomes
        self.events, self.outcomes = 0, Counter()
        return taken


def outcome_of(result: OrderResult) -> str:
    if result.duplicate:
        return "duplicate"
    if result.published is not None:
        return result.published.value.lower()
    return result.state.value.lower() if result.state is not None else "ignored"


class OrderEventHandler:
    def __init__(
        self,
        engine: Executor,
        dlq: DeadLetterSink,
        limits: Limits,
        *,
        stopping: asyncio.Event,
        backoff: Backoff | None = None,
    ) -> None:
        self._engine = engine
        self._dlq = dlq
        self._limits = limits
        self._stopping = stopping
        self._backoff = backoff or Backoff()
        self._in_flight = 0
        self.retrying = 0  # batches waiting for the database to come back
        self._idle = asyncio.Event()
        self._idle.set()
        self.tally = Tally()
        self.halted = False

    async def wait_idle(self) -> None:
        """Until no batch is being handled (stop() finishes the in-flight batch)."""
        await self._idle.wait()

    async def handle(self, batch: Sequence[Incoming]) -> bool:
        if self._stopping.is_set() or self.halted:
            return False
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._handle(batch)
        except Exception:
            # A bug here must not ack the batch. Halt: leave this batch and every later one
            # unacked for redelivery (to a fixed worker) rather than skip events.
            log.critical(
                "order batch of %d events failed; halting the order agents",
                len(batch),
                exc_info=True,
            )
            self.halted = True
            return False
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _handle(self, batch: Sequence[Incoming]) -> bool:
        letters: list[DeadLetter] = []
        valid: list[tuple[Incoming, OrderCommand]] = []
        for event in batch:
            try:
                valid.append((event, decode_order_event(event.kind, event.value, self._limits)))
            except InvalidEvent as exc:
                letters.append(self._letter(event, exc.error, exc.reason, exc.event_id))
        results = await self._execute([cmd for _, cmd in valid]) if valid else []
        if results is None:
            return False
        outcomes: Counter[tuple[OrderEventKind, str]] = Counter()
        for (event, cmd), result in zip(valid, results, strict=True):
            if isinstance(result, OrderResult):
                outcomes[event.kind, outcome_of(result)] += 1
            elif isinstance(result, InventoryError):
                reason = f"{result.status}: {result.message}"
                error = "internal" if result.status == "INTERNAL" else "rejected"
                letters.append(self._letter(event, error, reason, cmd.event_id))
            else:
                raise TypeError(f"an order event came back as {result!r}")
        if letters and not await self._send_letters(letters):
            return False
        self._count(batch, outcomes, letters)
        return True

    async def _execute(self, cmds: list[OrderCommand]) -> list[EngineResult] | None:
        """The engine's results, retrying the whole batch while the database is down.

        The engine isolates a command it fails on unexpectedly (it runs that batch again one
        by one and types the error), so anything but ``Unavailable`` here breaks its contract
        and propagates: ``handle`` halts rather than acks.
        """
        what = f"a batch of {len(cmds)} order events"
        failed = False
        try:
            async for attempt in retrying(
                self._stopping, retry_on=Unavailable, what=what, log=log, backoff=self._backoff
            ):
                with attempt:
                    return list(await self._engine.execute_many(cmds))
                if not failed:  # the attempt failed (success returned): counted once
                    failed = True
                    self.retrying += 1
        except Stopping:
            return None
        finally:
            if failed:
                self.retrying -= 1
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _send_letters(self, letters: list[DeadLetter]) -> bool:
        what = f"publishing {len(letters)} dead letters"
        try:
            async for attempt in retrying(
                self._stopping, retry_on=Exception, what=what, log=log, backoff=self._backoff
            ):
                with attempt:
                    await self._dlq.send(letters)
                    return True
        except Stopping:
            return False
        raise AssertionError("unreachable: tenacity re-raises the last error")

    @staticmethod
    def _letter(event: Incoming, error: str, reason: str, event_id: str | None) -> DeadLetter:
        return dead_letter(
            topic=event.topic,
            partition=event.partition,
            offset=event.offset,
            key=event.key,
            value=event.value,
            error=error,
            reason=reason,
            event_id=event_id,
        )

    def _count(
        self,
        batch: Sequence[Incoming],
        outcomes: Counter[tuple[OrderEventKind, str]],
        letters: list[DeadLetter],
    ) -> None:
        tally = self.tally
        tally.events += len(batch)
        for (kind, outcome), n in outcomes.items():
            metrics.EVENTS.labels(topic=KIND_LABELS[kind], outcome=outcome).inc(n)
            tally.outcomes[outcome] += n
        by_topic = {event.topic: event.kind for event in batch}
        for letter in letters:
            label = KIND_LABELS[by_topic[letter.source_topic]]
            metrics.EVENTS.labels(topic=label, outcome="dlq").inc()
            metrics.DLQ_EVENTS.labels(topic=label, reason=letter.error).inc()
            tally.outcomes["dlq"] += 1
            # one line per letter would bury the summary under a flood of bad input: the
            # summary counts them, the DLQ holds the reasons, DEBUG shows each one
            log.debug(
                "dead letter from %s[%d]@%d: %s",
                letter.source_topic,
                letter.partition,
                letter.offset,
                letter.reason,
            )
