"""What the engine's batch loop holds: a queued command with its caller's future, a batch's
turn to read and write, and which batches run alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.commands import Command, Source, StockCommand
from service.domain.plan import Result


@dataclass(slots=True)
class Pending:
    command: Command
    future: asyncio.Future[Result]


class WritingTurn:
    """A batch's hold on the engine's lock of the batch that reads and writes, given back
    once: when the batch sends its COMMIT, or when it ends without getting there (a failure,
    a task cancelled before it ran)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock: asyncio.Lock | None = lock

    def end(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def reads_back(command: Command) -> bool:
    """Whether the command's caller may read its write back at once: an RPC's may (GetStock
    after ReserveStock), an order event's or the expiry timer's has no reader waiting."""
    return isinstance(command, StockCommand) or command.source is Source.API


def runs_alone(batch: Sequence[Pending]) -> bool:
    """A batch with an RPC's caller runs alone: the next batch forms when it has finished, not
    when it sends its COMMIT. Its callers wait for their answers, then send their next commands
    together, and they all join the next batch. Formed at the COMMIT instead, the next batch
    held only what had arrived while this one wrote, the answered callers made a third, and
    gRPC's batches halved (docs/architecture.md, "Engine performance")."""
    return any(reads_back(pending.command) for pending in batch)
