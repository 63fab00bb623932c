"""The expiry timer against a fake engine, and the reading of inventory-reservations events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from service.domain.errors import Unavailable
from service.domain.events import MalformedEvent, decode_reservation_changed
from service.domain.results import OrderResult
from service.domain.values import OrderState, ResultStatus
from streams.expiry.schedule import Entry, ExpirySchedule
from streams.expiry.timer import ExpiryTimer
from tests.waiting import wait_for

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class FakeEngine:
    """Expires what is RESERVED and due by the clock, like the engine's planner does."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.orders: dict[str, tuple[OrderState, float]] = {}
        self.calls: list[list[str]] = []
        self.fail_next: list[Exception] = []
        self.skip: set[str] = set()  # orders it answers nothing for (an error result)

    async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]:
        self.calls.append(list(order_ids))
        if self.fail_next:
            raise self.fail_next.pop(0)
        results = []
        for order_id in order_ids:
            if order_id in self.skip:
                continue
            state, expires = self.orders.get(order_id, (None, 0.0))
            if state is OrderState.RESERVED and expires <= self.clock.now:
                self.orders[order_id] = (OrderState.EXPIRED, expires)
                results.append(
                    OrderResult(order_id, OrderState.EXPIRED, (), at(expires), ResultStatus.EXPIRED)
                )
            else:
                results.append(OrderResult(order_id, state, (), at(expires), duplicate=True))
        return results


class Harness:
    def __init__(self, chunk: int = 100) -> None:
        self.clock = Clock()
        self.engine = FakeEngine(self.clock)
        self.schedule = ExpirySchedule()
        self.forgotten: list[str] = []
        self.timer = ExpiryTimer(
            self.schedule,
            self.engine,
            forget=self.forget,
            tick_s=0.25,
            chunk=chunk,
            clock=self.clock,
        )

    async def forget(self, entries: list[Entry]) -> None:
        self.forgotten.extend(entry.order_id for entry in entries)

    def reserve(self, order_id: str, expires: float, partition: int = 0) -> None:
        self.engine.orders[order_id] = (OrderState.RESERVED, expires)
        self.schedule.put(Entry(order_id, expires, partition))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


async def test_the_due_window_is_expired_in_one_engine_call() -> None:
    h = Harness()
    for i in range(5):
        h.reserve(f"o{i}", T0 + i)
    h.clock.now = T0 + 2.5
    lag_count = sample("inventory_expiry_lag_seconds_count")
    expired_total = sample("inventory_reservations_expired_total", via="timer")

    assert await h.timer.tick() == 3
    assert h.engine.calls == [["o0", "o1", "o2"]]
    assert h.forgotten == ["o0", "o1", "o2"]
    assert sample("inventory_expiry_lag_seconds_count") == lag_count + 3
    assert sample("inventory_reservations_expired_total", via="timer") == expired_total + 3
    assert len(h.schedule) == 2


async def test_large_windows_go_in_chunks() -> None:
    h = Harness(chunk=2)
    for i in range(5):
        h.reserve(f"o{i}", T0)
    assert await h.timer.tick() == 5
    assert [len(call) for call in h.engine.calls] == [2, 2, 1]
    assert len(h.schedule) == 0


async def test_an_order_settled_elsewhere_is_dropped_without_counting() -> None:
    h = Harness()
    h.reserve("paid", T0)
    h.engine.orders["paid"] = (OrderState.COMMITTED, T0)  # the commit landed first
    assert await h.timer.tick() == 0
    assert h.forgotten == ["paid"]
    assert len(h.schedule) == 0


async def test_an_order_not_yet_due_by_the_engine_waits_for_its_deadline() -> None:
    h = Harness()
    h.reserve("early", T0)
    h.engine.orders["early"] = (OrderState.RESERVED, T0 + 30)  # e.g. reserved again later
    assert await h.timer.tick() == 0
    assert h.forgotten == [] and h.schedule.next_due() == T0 + 30
    h.clock.now = T0 + 30
    assert await h.timer.tick() == 1


async def test_an_unavailable_database_puts_the_window_back_with_backoff() -> None:
    h = Harness()
    h.reserve("a", T0)
    h.engine.fail_next = [Unavailable("down"), Unavailable("down")]
    failures = sample("inventory_expiry_failures_total", via="timer", reason="unavailable")

    assert await h.timer.tick() == 0
    first_retry = h.schedule.next_due()
    assert first_retry is not None and first_retry > T0
    h.clock.now = first_retry
    assert await h.timer.tick() == 0
    second_retry = h.schedule.next_due()
    assert second_retry is not None and second_retry - h.clock.now > first_retry - T0
    h.clock.now = second_retry
    assert await h.timer.tick() == 1
    assert h.forgotten == ["a"]
    assert sample("inventory_expiry_failures_total", via="timer", reason="unavailable") == (
        failures + 2
    )


async def test_an_unexpected_engine_error_never_escapes_the_tick() -> None:
    h = Harness()
    h.reserve("a", T0)
    h.engine.fail_next = [RuntimeError("bug")]
    assert await h.timer.tick() == 0
    assert "a" in h.schedule
    h.clock.now += 10
    assert await h.timer.tick() == 1


async def test_an_order_the_engine_answered_nothing_for_is_retried() -> None:
    h = Harness()
    h.reserve("odd", T0)
    h.engine.skip = {"odd"}
    assert await h.timer.tick() == 0
    assert "odd" in h.schedule and h.forgotten == []
    h.engine.skip = set()
    h.clock.now += 5
    assert await h.timer.tick() == 1


async def test_an_entry_replaced_during_the_engine_call_is_kept() -> None:
    h = Harness()
    h.reserve("a", T0)

    class Racing(FakeEngine):
        async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]:
            h.schedule.put(Entry("a", T0 + 100, 0))  # the agent saw a newer RESERVED
            return await super().expire(order_ids)

    racing = Racing(h.clock)
    racing.orders = h.engine.orders
    h.timer._engine = racing
    await h.timer.tick()
    assert h.forgotten == []  # the newer entry stays in the table
    assert h.schedule.next_due() == T0 + 100


async def test_start_and_stop() -> None:
    h = Harness()
    h.reserve("a", T0)
    await h.timer.start()
    try:
        await wait_for(lambda: h.forgotten, within_s=5, what="the due order expired")
    finally:
        await h.timer.stop()
    assert h.forgotten == ["a"]


# -- reading inventory-reservations --


def event(**body: object) -> bytes:
    return json.dumps(body).encode()


def test_reserved_schedules_its_expires_at() -> None:
    change = decode_reservation_changed(
        b"o1", event(order_id="o1", status="RESERVED", expires_at="2024-05-01T12:00:00+00:00")
    )
    assert change.order_id == "o1"
    assert change.expires_at == datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "expires_at", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00", 1714564800, 1714564800.0]
)
def test_expires_at_forms(expires_at: object) -> None:
    change = decode_reservation_changed(
        None, event(order_id="o", status="RESERVED", expires_at=expires_at)
    )
    assert change.expires_at == 1714564800.0


@pytest.mark.parametrize(
    "status",
    ["COMMITTED", "RELEASED", "EXPIRED", "REJECTED", "COMMIT_FAILED", "CANCEL_AFTER_COMMIT"],
)
def test_every_other_status_ends_the_entry(status: str) -> None:
    assert decode_reservation_changed(b"o", event(order_id="o", status=status)).expires_at is None


def test_the_key_names_the_order_when_the_body_does_not() -> None:
    assert decode_reservation_changed(b"k", event(status="EXPIRED")).order_id == "k"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        None,
        event(order_id="o"),
        event(order_id="o", status="RESERVED"),
        event(order_id="o", status="RESERVED", expires_at="tomorrow"),
        event(order_id="o", status="RESERVED", expires_at=True),
    ],
)
def test_unusable_events_are_refused(raw: bytes | None) -> None:
    with pytest.raises(MalformedEvent):
        decode_reservation_changed(b"o", raw)
