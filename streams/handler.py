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
from service.domain.results import OrderResult, StockLevel
from service.domain.validation import Limits
from streams.records import KIND_LABELS, DeadLetter, InvalidEvent, dead_letter, decode_order_event

log = logging.getLogger(__name__)

EngineResult = OrderResult | StockLevel | InventoryError


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


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.05
    max_s: float = 5.0
    attempts_before_split: int = 3  # unexpected errors: then run the batch one by one


class _InternalError(Exception):
    """The engine failed on one command with something it did not type (a bug)."""


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
            else:
                reason = str(result)
                error = "internal" if isinstance(result, _InternalError) else "rejected"
                if isinstance(result, InventoryError):
                    reason = f"{result.status}: {result.message}"
                    error = "internal" if result.status == "INTERNAL" else "rejected"
                letters.append(self._letter(event, error, reason, cmd.event_id))
        if letters and not await self._send_letters(letters):
            return False
        self._count(batch, outcomes, letters)
        return True

    async def _execute(self, cmds: list[OrderCommand]) -> list[EngineResult | Exception] | None:
        """The engine's results, retrying the whole batch while the database is down."""
        delay = self._backoff.first_s
        failures = 0
        while True:
            try:
                results: list[EngineResult | Exception] = list(
                    await self._engine.execute_many(cmds)
                )
            except Unavailable as exc:
                log.warning(
                    "database unavailable, retrying %d events in %.2fs: %s", len(cmds), delay, exc
                )
            except Exception:
                failures += 1
                log.exception("engine failed on a batch of %d (attempt %d)", len(cmds), failures)
                if failures >= self._backoff.attempts_before_split:
                    return await self._execute_one_by_one(cmds)
            else:
                retry = [i for i, r in enumerate(results) if isinstance(r, Unavailable)]
                if not retry:
                    return results
                # the contract says the engine raises; be safe if one command reports it
                again = await self._execute([cmds[i] for i in retry])
                if again is None:
                    return None
                for i, result in zip(retry, again, strict=True):
                    results[i] = result
                return results
            if not await self._pause(delay):
                return None
            delay = min(delay * 2, self._backoff.max_s)

    async def _execute_one_by_one(
        self, cmds: list[OrderCommand]
    ) -> list[EngineResult | Exception] | None:
        """Isolate the command the engine keeps failing on; it alone goes to the DLQ."""
        results: list[EngineResult | Exception] = []
        for cmd in cmds:
            delay = self._backoff.first_s
            while True:
                try:
                    results.append((await self._engine.execute_many([cmd]))[0])
                    break
                except Unavailable as exc:
                    log.warning("database unavailable, retrying in %.2fs: %s", delay, exc)
                except Exception as exc:
                    log.exception("engine failed on %r; sending it to the DLQ", cmd)
                    results.append(_InternalError(f"{type(exc).__name__}: {exc}"))
                    break
                if not await self._pause(delay):
                    return None
                delay = min(delay * 2, self._backoff.max_s)
        return results

    async def _send_letters(self, letters: list[DeadLetter]) -> bool:
        delay = self._backoff.first_s
        while True:
            try:
                await self._dlq.send(letters)
                return True
            except Exception:
                log.exception("could not publish %d dead letters, retrying", len(letters))
            if not await self._pause(delay):
                return False
            delay = min(delay * 2, self._backoff.max_s)

    async def _pause(self, seconds: float) -> bool:
        """Sleep, unless the worker is stopping (then False: give the batch up, unacked)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

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
