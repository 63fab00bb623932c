"""The consumer's eager ``wait_first``: same answers as mode's, without tasks when nothing waits."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from streams.kafka_transport import EagerWaitFirst


class Drain(EagerWaitFirst):
    pass


async def immediate(value: int) -> int:
    return value


async def gated(gate: asyncio.Event, trace: list[str]) -> str:
    try:
        await gate.wait()
        trace.append("passed")
        return "opened"
    except asyncio.CancelledError:
        trace.append("cancelled")
        raise


async def test_a_coroutine_that_never_suspends_wins_without_a_task() -> None:
    service = Drain()
    suspend = asyncio.Event()
    tasks_before = len(asyncio.all_tasks())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unawaited suspend.wait() would warn
        first = immediate(7)
        result = await service.wait_first(first, suspend.wait())
    assert (result.done, result.results, result.stopped) == ([first], [7], False)
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_coroutine_that_suspends_is_resumed_and_wins() -> None:
    service = Drain()
    gate, suspend, trace = asyncio.Event(), asyncio.Event(), []
    asyncio.get_running_loop().call_later(0.01, gate.set)
    result = await service.wait_first(gated(gate, trace), suspend.wait())
    assert result.results == ["opened"] and not result.stopped
    assert trace == ["passed"]


async def test_a_suspended_coroutine_loses_to_the_flow_suspension_and_is_cancelled() -> None:
    service = Drain()
    gate, suspend, trace = asyncio.Event(), asyncio.Event(), []
    waiter = suspend.wait()
    asyncio.get_running_loop().call_later(0.01, suspend.set)
    result = await service.wait_first(gated(gate, trace), waiter)
    assert result.done == [waiter] and result.results == [True]
    await asyncio.sleep(0)  # the loser's cancellation is delivered on the next step
    assert trace == ["cancelled"]


async def test_a_stopped_service_reports_stopped_even_when_the_coroutine_finished() -> None:
    service = Drain()
    service._stopped.set()
    result = await service.wait_first(immediate(1), asyncio.Event().wait())
    assert result.stopped and result.done == []


async def test_an_error_before_the_first_suspension_propagates() -> None:
    async def broken() -> None:
        raise LookupError("no such partition")

    with pytest.raises(LookupError):
        await Drain().wait_first(broken(), asyncio.Event().wait())
