"""Telling the stock-changed hook (the cache) what each batch committed.

A batch with an RPC's caller in it answers once its rows are written: the caller may read
them back at once (GetStock after ReserveStock), and reads are served from the cache. A batch
of events has no such reader, so its rows go to a background writer and the next batch does
not wait for Redis: a slow or failing cache cannot slow the order pipeline, and the batches
of events no longer spend a Redis round trip each on their serial path.

The background writer makes one call at a time. Rows committed while it is out wait for its
next call, the newest version of each row kept: the cache keeps the newest version of a row
whatever order its writes land in (``service/cache/scripts.py``), so an older write is
worthless once a newer one is waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from service.domain.snapshot import StockRow

log = logging.getLogger(__name__)

# Told the committed state of every stock row a batch changed, and the batch's time.
StockChangedHook = Callable[[list[StockRow], datetime], Awaitable[object]]


class StockNotifier:
    def __init__(self, hook: StockChangedHook) -> None:
        self._hook = hook
        self._waiting: dict[str, tuple[StockRow, datetime]] = {}  # by stock id
        self._writer: asyncio.Task[None] | None = None

    async def now(self, rows: list[StockRow], at: datetime) -> None:
        """Write ``rows`` before returning (a failure is logged, never raised)."""
        await self._call(rows, at)

    def later(self, rows: Sequence[StockRow], at: datetime) -> None:
        """Hand ``rows`` to the background writer and return at once."""
        waiting = self._waiting
        for row in rows:
            kept = waiting.get(row.stock_id)
            if kept is None or row.version >= kept[0].version:
                waiting[row.stock_id] = (row, at)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting(), name="engine-stock-changed")

    @property
    def waiting(self) -> int:
        """Rows handed to ``later`` and not yet in a call."""
        return len(self._waiting)

    async def flush(self) -> None:
        """Return once every row handed to ``later`` went out (written, or its failure
        logged). The writer is shielded: a caller that gives up does not cancel it."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, {}
                # one call per commit time: the hook takes the batch's time with its rows
                by_time: dict[datetime, list[StockRow]] = {}
                for row, at in waiting.values():
                    by_time.setdefault(at, []).append(row)
                for at, rows in by_time.items():
                    await self._call(rows, at)
        finally:
            self._writer = None

    async def _call(self, rows: list[StockRow], at: datetime) -> None:
        """After the commit: a failure here must not make the batch run again."""
        try:
            await self._hook(rows, at)
        except Exception:
            log.warning("stock-changed hook failed; the warmer will catch up", exc_info=True)
