"""StockNotifier: RPC batches write before they answer, event batches in the background."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.snapshot import StockRow
from service.domain.values import Levels, Sku
from service.engine_notify import StockNotifier

T0 = datetime(2026, 12, 4, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)


def row(stock_id: str, version: int, available: int = 10) -> StockRow:
    return StockRow(
        stock_id, Sku(f"sku-{stock_id}"), "wh", Levels(available, 0, available), version
    )


class Hook:
    """Records each call; ``gate`` holds the calls until it is set."""

    def __init__(self, *, fail: int = 0) -> None:
        self.calls: list[tuple[list[tuple[str, int]], datetime]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail = fail

    async def __call__(self, rows: list[StockRow], at: datetime) -> None:
        self.entered.set()
        await self.gate.wait()
        self.calls.append(([(r.stock_id, r.version) for r in rows], at))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("redis went away")


async def writer_out(first: StockRow) -> tuple[Hook, StockNotifier]:
    """A notifier whose background writer is out with ``first``, held until ``gate`` is set."""
    hook = Hook()
    hook.gate.clear()
    notifier = StockNotifier(hook)
    notifier.later([first], T0)
    await hook.entered.wait()
    return hook, notifier


async def test_now_writes_before_it_returns() -> None:
    hook = Hook()
    notifier = StockNotifier(hook)
    await notifier.now([row("a", 1)], T0)
    assert hook.calls == [([("a", 1)], T0)]


async def test_later_returns_at_once_and_flush_waits_for_the_write() -> None:
    hook = Hook()
    hook.gate.clear()
    notifier = StockNotifier(hook)
    notifier.later([row("a", 1), row("b", 1)], T0)
    assert hook.calls == []
    await hook.entered.wait()  # the writer took the rows and is out
    assert notifier.waiting == 0
    flushed = asyncio.create_task(notifier.flush())
    await asyncio.sleep(0)
    assert not flushed.done()
    hook.gate.set()
    await flushed
    assert hook.calls == [([("a", 1), ("b", 1)], T0)]


async def test_rows_committed_while_a_write_is_out_wait_for_one_more_call_newest_kept() -> None:
    hook, notifier = await writer_out(row("a", 1))
    # three batches commit while the first write is out
    notifier.later([row("a", 2), row("b", 5)], T1)
    notifier.later([row("a", 3)], T1)
    notifier.later([row("b", 4)], T0)  # an older version of b: never written over a newer
    assert notifier.waiting == 2
    hook.gate.set()
    await notifier.flush()
    assert hook.calls == [([("a", 1)], T0), ([("a", 3), ("b", 5)], T1)]


async def test_one_call_per_commit_time() -> None:
    hook, notifier = await writer_out(row("x", 1))
    notifier.later([row("a", 1)], T0)
    notifier.later([row("b", 1)], T1)
    hook.gate.set()
    await notifier.flush()
    assert hook.calls[1:] == [([("a", 1)], T0), ([("b", 1)], T1)]


async def test_a_failed_write_is_logged_and_the_next_rows_still_go_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = Hook(fail=1)
    notifier = StockNotifier(hook)
    with caplog.at_level(logging.WARNING, logger="service.engine_notify"):
        notifier.later([row("a", 1)], T0)
        await notifier.flush()
        await notifier.now([row("a", 2)], T1)  # never raises either
        notifier.later([row("a", 3)], T1)
        await notifier.flush()
    assert [versions for versions, _ in hook.calls] == [[("a", 1)], [("a", 2)], [("a", 3)]]
    assert "the warmer will catch up" in caplog.text


async def test_a_caller_that_stops_waiting_does_not_cancel_the_writer() -> None:
    hook, notifier = await writer_out(row("a", 1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await notifier.flush()
    hook.gate.set()
    await notifier.flush()
    assert hook.calls == [([("a", 1)], T0)]
