"""Faust's per-message hand-off race, run with one new task per message instead of four.

Faust's drain loop hands every fetched message to the streams with
``wait_first(callback(message), suspend_flow.wait())``: the hand-off races the flow's
suspension (a rebalance), so that a hand-off blocked on a full stream buffer is abandoned
(faust-streaming #221, PR #223). mode's ``wait_first`` wraps the callback, the suspension's
wait and the service's stopped and crashed waits each in a new task, waits for the first to
finish and cancels the other three: four tasks made and three cancelled (each cancellation one
more step of the loop) for every message.

``LeanHandOff.wait_first`` runs the same race for that call. The callback still runs in a task
of its own, made at the same point, so the drain loop yields to the event loop for every
message and the callback runs when it ran before: what changed between mode's race and an
*eager* hand-off (the callback run in the drain loop's own task) is not done here. The three
events are watched by long-lived waiters, one task each, made when the race first runs and
kept while their events stay clear. When any of the three is already set at the call, or for
any other call (another shape, a timeout), mode's ``wait_first`` runs unchanged.

The result is mode's: the winners are the callback and the events done when the wait returns,
exceptions of done ones propagate, ``stopped`` when the service stopped or crashed, and the
callback's task is cancelled if it did not finish. ``tests/unit/test_hand_off.py`` runs the
same races through both and compares them; ``tests/chaos/test_scaling.py`` runs rebalances,
kills and restarts under load with it and reconciles the ledger against the topics.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any

from mode import Service
from mode.services import WaitArgT, WaitResults

EVENT_WAIT = asyncio.Event.wait.__code__


class LeanHandOff(Service):
    """A service (the consumer) whose hand-off race keeps its event waiters between calls.

    ``suspend_flow`` is the consumer's ``asyncio.Event`` that a rebalance sets.
    """

    suspend_flow: asyncio.Event
    _event_waiters: tuple[asyncio.Future[Any], ...] = ()
    # the hand-offs waiting now (one at a time in Faust's drain loop)
    _races: set[asyncio.Future[None]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._races = set()

    async def wait_first(
        self,
        *coros: WaitArgT,
        timeout: Any = None,  # noqa: ASYNC109 (mode's signature)
    ) -> WaitResults:
        if timeout is not None or not self._is_hand_off(coros) or self._any_event_set():
            return await super().wait_first(*coros, timeout=timeout)
        callback, suspended = coros
        assert isinstance(callback, Coroutine) and isinstance(suspended, Coroutine)
        suspended.close()  # its event is watched by a long-lived waiter
        waiters = self._waiters()
        task = asyncio.ensure_future(callback)
        try:
            racers = (task, *waiters)
            while not any(racer.done() for racer in racers):
                await self._woken_by(task)
            if any(waiter.cancelled() for waiter in waiters):
                return WaitResults([], [], True)  # dropped by on_stop: the consumer stops
            for racer in racers:
                if racer.done() and racer.exception() is not None:
                    racer.result()  # propagate, as mode does
            # mode's order: the callback, the suspension, then stopped and crashed
            watched = (callback, suspended, *self._events()[1:])
            entries = zip(watched, racers, strict=True)
            finished = [(coro, future.result()) for coro, future in entries if future.done()]
            if finished and not self._stopped.is_set() and not self._crashed.is_set():
                return WaitResults([c for c, _ in finished], [r for _, r in finished], False)
            return WaitResults([], [], True)
        finally:
            if not task.done():
                task.cancel()

    async def _woken_by(self, task: asyncio.Future[Any]) -> None:
        """Until the callback's task or any event waiter is done (or, rarely, a waiter that was
        replaced finishes late: the caller then looks again).

        ``asyncio.wait`` over the four would add and remove a done callback on each of them for
        every message; the event waiters instead wake every pending race from one callback each,
        added once when they are made.
        """
        woken = asyncio.get_running_loop().create_future()
        wake = functools.partial(_wake, woken)
        task.add_done_callback(wake)
        self._races.add(woken)
        try:
            await woken
        finally:
            self._races.discard(woken)
            task.remove_done_callback(wake)

    def _wake_races(self, _waiter: asyncio.Future[Any]) -> None:
        for woken in self._races:
            _wake(woken)

    async def on_stop(self) -> None:
        await super().on_stop()
        self._drop_waiters()

    def _is_hand_off(self, coros: tuple[WaitArgT, ...]) -> bool:
        """``(callback(message), suspend_flow.wait())``, as Faust's drain loop calls it."""
        if len(coros) != 2 or not all(isinstance(c, Coroutine) for c in coros):
            return False
        second: Any = coros[1]
        frame = getattr(second, "cr_frame", None)
        return (
            getattr(second, "cr_code", None) is EVENT_WAIT
            and frame is not None
            and frame.f_locals.get("self") is getattr(self, "suspend_flow", None)
        )

    def _events(self) -> tuple[Any, ...]:
        return (self.suspend_flow, self._stopped, self._crashed)

    def _any_event_set(self) -> bool:
        return any(event.is_set() for event in self._events())

    def _waiters(self) -> tuple[asyncio.Future[Any], ...]:
        """One waiter per event; a finished one (its event was set since) is made afresh."""
        if not self._event_waiters or any(w.done() for w in self._event_waiters):
            self._drop_waiters()
            self._event_waiters = tuple(asyncio.ensure_future(e.wait()) for e in self._events())
            for waiter in self._event_waiters:
                waiter.add_done_callback(self._wake_races)
        return self._event_waiters

    def _drop_waiters(self) -> None:
        for waiter in self._event_waiters:
            if not waiter.done():
                waiter.cancel()
        self._event_waiters = ()


def _wake(woken: asyncio.Future[None], _done: object = None) -> None:
    if not woken.done():
        woken.set_result(None)
