"""A service's loop that runs as one task between ``start()`` and ``stop()``.

The sweeper and the invariant monitor are such loops: ``_run`` goes round until
``stopping`` is set, and ``_sleep`` waits between rounds but returns as soon as ``stop()``
is called. ``stop()`` also cancels the task, so a round blocked on the database ends too.
"""

from __future__ import annotations

import asyncio
import contextlib

from service.retry import pause


class BackgroundLoop:
    task_name = "background-loop"

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if ``stop()`` comes first; True when stopping."""
        return await pause(self._stopping, seconds)
