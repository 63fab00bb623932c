"""What the engine's batch loop holds: a queued command with its caller's future, and a
batch's turn to read and write."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from service.domain.commands import Command
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
