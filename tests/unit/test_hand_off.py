"""``LeanHandOff.wait_first`` answers every hand-off race as mode's ``wait_first`` does.

Each scenario runs through both: a service with mode's race and one with the lean race. A
scenario is a callback that finishes (or raises, or blocks) after some loop iterations, and
events (the flow's suspension, the service's stop or crash) set before the call or after some
iterations. Compared: what the race returns (winners by role, results, stopped), whether the
callback ran to its end or was cancelled, and that it ran in a task of its own.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
from mode import Service

from streams.hand_off import LeanHandOff

NEVER = -1


class ModeRace(Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


class LeanRace(LeanHandOff, ModeRace):
    pass


@dataclass
class Trace:
    ran_in: asyncio.Task[Any] | None = None
    finished: bool = False
    cancelled: bool = False
    roles: dict[int, str] = field(default_factory=dict)


async def steps(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def callback(trace: Trace, after: int, outcome: str) -> str:
    trace.ran_in = asyncio.current_task()
    try:
        if after == NEVER:
            await asyncio.get_running_loop().create_future()
        await steps(after)
    except asyncio.CancelledError:
        trace.cancelled = True
        raise
    if outcome == "raise":
        raise ValueError("the callback failed")
    trace.finished = True
    return "handed"


async def race(
    service: ModeRace,
    *,
    callback_after: int,
    outcome: str = "return",
    preset: str | None = None,
    event: str | None = None,
    event_after: int = 0,
) -> tuple[Any, Trace]:
    trace = Trace()
    events = {
        "suspend": service.suspend_flow,
        "stopped": service._stopped,
        "crashed": service._crashed,
    }
    if preset is not None:
        events[preset].set()

    async def set_later() -> None:
        await steps(event_after)
        assert event is not None
        events[event].set()

    setter = asyncio.create_task(set_later()) if event is not None else None
    first = callback(trace, callback_after, outcome)
    second = service.suspend_flow.wait()
    trace.roles = {id(first): "callback", id(second): "suspend"}
    trace.roles |= {id(e): name for name, e in events.items()}
    try:
        result = await service.wait_first(first, second)
        answer: Any = (
            [trace.roles[id(w)] for w in result.done],
            list(result.results),
            result.stopped,
        )
    except ValueError as exc:
        answer = ("raised", str(exc))
    finally:
        if setter is not None:
            await setter
    await steps(3)  # let a cancelled callback see its cancellation
    return answer, trace


SCENARIOS = [
    *(
        {"callback_after": after, "event": event, "event_after": at}
        for after, event, at in itertools.product(
            (0, 1, 3, NEVER), ("suspend", "stopped", "crashed", None), (0, 1, 2, 5)
        )
        if not (after == NEVER and event is None)
    ),
    *({"callback_after": after, "preset": "suspend"} for after in (0, 2)),
    {"callback_after": 0, "outcome": "raise"},
    {"callback_after": 2, "outcome": "raise", "event": "suspend", "event_after": 5},
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: "-".join(map(str, s.values())))
async def test_the_lean_race_answers_as_modes_race(scenario: dict[str, Any]) -> None:
    mode_answer, mode_trace = await race(ModeRace(), **scenario)
    lean_answer, lean_trace = await race(LeanRace(), **scenario)

    assert lean_answer == mode_answer
    assert (lean_trace.finished, lean_trace.cancelled) == (
        mode_trace.finished,
        mode_trace.cancelled,
    )
    # the callback runs in a task of its own, as under mode: never in the caller's
    assert lean_trace.ran_in is not None and lean_trace.ran_in is not asyncio.current_task()


async def test_the_event_waiters_are_kept_between_hand_offs() -> None:
    service = LeanRace()
    await race(service, callback_after=0)
    kept = service._event_waiters
    # the loop may hold other tests' tasks, which can end meanwhile: compare sets, not counts
    before = asyncio.all_tasks()

    for _ in range(200):
        answer, trace = await race(service, callback_after=1)
        assert answer == (["callback"], ["handed"], False) and trace.finished

    assert service._event_waiters == kept and len(kept) == 3
    assert asyncio.all_tasks() - before == set()  # no race left a task behind


async def test_a_suspension_that_was_cleared_is_watched_again() -> None:
    service = LeanRace()
    answer, _ = await race(service, callback_after=NEVER, event="suspend", event_after=1)
    assert answer == (["suspend"], [True], False)
    service.suspend_flow.clear()  # the flow resumed after the rebalance

    answer, trace = await race(service, callback_after=0)
    assert answer == (["callback"], ["handed"], False) and trace.finished
    answer, trace = await race(service, callback_after=NEVER, event="suspend", event_after=2)
    assert answer == (["suspend"], [True], False) and trace.cancelled


async def test_waiters_replaced_after_a_suspension_do_not_end_the_next_race() -> None:
    # the replaced waiters are cancelled, and their wake-ups land during the next race
    service = LeanRace()
    await race(service, callback_after=NEVER, event="suspend", event_after=1)
    service.suspend_flow.clear()

    answer, trace = await race(service, callback_after=4)

    assert answer == (["callback"], ["handed"], False) and trace.finished
    assert service._races == set()  # nothing waits once the race is over


async def test_stopping_the_service_cancels_its_waiters() -> None:
    service = LeanRace()
    await service.start()
    await race(service, callback_after=0)
    waiters = service._event_waiters

    await service.stop()
    await steps(2)

    assert service._event_waiters == ()
    assert all(w.done() for w in waiters)


@pytest.mark.parametrize("limit", [None, 1.0])
async def test_other_races_are_modes_own(limit: float | None) -> None:
    service = LeanRace()
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)

    result = await service.wait_first(event.wait(), timeout=limit)

    assert (result.results, result.stopped) == ([True], False)
    assert service._event_waiters == ()  # the lean race never ran


async def test_the_suspensions_wait_is_closed_not_left_unawaited() -> None:
    service = LeanRace()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            await race(service, callback_after=0)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
