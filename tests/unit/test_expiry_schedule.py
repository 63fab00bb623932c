"""The in-memory expiry index: due order, in-flight entries, partitions, rebuilds."""

from __future__ import annotations

import random

from streams.expiry.schedule import COMPACT_ABOVE, Entry, ExpirySchedule


def entry(order: str, at: float, partition: int = 0) -> Entry:
    return Entry(order, at, partition)


def test_due_entries_come_out_earliest_first_and_only_when_due() -> None:
    schedule = ExpirySchedule()
    for order, at in (("c", 30.0), ("a", 10.0), ("b", 20.0), ("d", 40.0)):
        schedule.put(entry(order, at))
    assert schedule.take_due(5.0, 10) == []
    assert [e.order_id for e in schedule.take_due(30.0, 10)] == ["a", "b", "c"]
    assert schedule.next_due() == 40.0
    assert (schedule.waiting, schedule.in_flight) == (1, 3)


def test_a_window_is_taken_a_chunk_at_a_time() -> None:
    schedule = ExpirySchedule()
    for i in range(5):
        schedule.put(entry(f"o{i}", float(i)))
    assert [e.order_id for e in schedule.take_due(10.0, 2)] == ["o0", "o1"]
    assert [e.order_id for e in schedule.take_due(10.0, 2)] == ["o2", "o3"]
    assert [e.order_id for e in schedule.take_due(10.0, 2)] == ["o4"]


def test_put_replaces_the_earlier_expiry() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("a", 10.0))
    schedule.put(entry("a", 50.0))
    assert schedule.take_due(20.0, 10) == []
    assert schedule.take_due(50.0, 10) == [entry("a", 50.0)]
    assert len(schedule) == 1


def test_discard_removes_waiting_and_in_flight_entries() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("a", 1.0))
    schedule.put(entry("b", 2.0))
    assert schedule.discard("a")
    assert not schedule.discard("a")
    (taken,) = schedule.take_due(5.0, 10)
    assert schedule.discard(taken.order_id)
    assert schedule.done("b") is None  # settled meanwhile: nothing to delete
    assert len(schedule) == 0 and schedule.next_due() is None


def test_done_returns_the_entry_unless_replaced_while_in_flight() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("a", 1.0))
    schedule.put(entry("b", 1.0))
    schedule.take_due(5.0, 10)
    assert schedule.done("a") == entry("a", 1.0)
    schedule.put(entry("b", 100.0))  # a newer RESERVED arrived while the engine worked
    assert schedule.done("b") is None
    assert "b" in schedule and schedule.next_due() == 100.0


def test_retry_puts_an_in_flight_entry_back_for_later() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("a", 1.0))
    schedule.take_due(5.0, 10)
    assert schedule.retry("a", 7.0)
    assert schedule.take_due(6.0, 10) == []
    assert schedule.take_due(7.0, 10) == [entry("a", 1.0)]  # the deadline itself is kept
    schedule.discard("a")
    assert not schedule.retry("a", 9.0)


def test_retain_keeps_only_the_assigned_partitions() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("a", 1.0, partition=0))
    schedule.put(entry("b", 2.0, partition=1))
    schedule.put(entry("c", 3.0, partition=2))
    schedule.take_due(1.0, 10)  # a in flight
    assert schedule.retain({1, 2}) == 1
    assert sorted(e.order_id for e in schedule.entries()) == ["b", "c"]


def test_replace_rebuilds_from_scratch() -> None:
    schedule = ExpirySchedule()
    schedule.put(entry("old", 1.0))
    schedule.take_due(1.0, 10)
    schedule.replace([entry("x", 5.0), entry("y", 3.0)])
    assert schedule.in_flight == 0
    assert [e.order_id for e in schedule.take_due(10.0, 10)] == ["y", "x"]


def test_stale_heap_items_are_compacted_away() -> None:
    schedule = ExpirySchedule()
    for round_ in range(5):
        for i in range(COMPACT_ABOVE):
            schedule.put(entry(f"o{i}", float(round_ * 10 + i % 7)))
    assert len(schedule) == COMPACT_ABOVE
    assert len(schedule._heap) <= 2 * COMPACT_ABOVE + 1
    due = schedule.take_due(1e9, 10 * COMPACT_ABOVE)
    assert len(due) == COMPACT_ABOVE
    assert all(e.expires_at >= 40.0 for e in due)  # only the last put of each order counts


def test_random_operations_agree_with_a_plain_dict() -> None:
    rng = random.Random(7)
    schedule = ExpirySchedule()
    model: dict[str, float] = {}
    for step in range(5_000):
        order = f"o{rng.randrange(200)}"
        op = rng.random()
        if op < 0.5:
            at = rng.uniform(0, 1000)
            schedule.put(entry(order, at))
            model[order] = at
        elif op < 0.7:
            assert schedule.discard(order) == (order in model)
            model.pop(order, None)
        else:
            now = rng.uniform(0, 1000)
            taken = schedule.take_due(now, rng.randrange(1, 20))
            for e in taken:
                assert e.expires_at <= now
                assert model.pop(e.order_id) == e.expires_at
                assert schedule.done(e.order_id) == e
            earliest = min(model.values(), default=None)
            if len(taken) == 0 and earliest is not None:
                assert earliest > now, step
    assert len(schedule) == len(model)
