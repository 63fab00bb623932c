"""StallWatch: which order partitions stand short of their log end, and are sought back."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from streams.offsets import OffsetGuard, StallWatch

AFTER_S = 10.0


class TP(NamedTuple):
    topic: str
    partition: int


P0, P1 = TP("order-created", 0), TP("order-created", 1)
PAID = TP("order-paid", 0)


def free(_topic: str) -> bool:
    return False


def blocked(_topic: str) -> bool:
    return True


def watch_at(**positions: int) -> tuple[OffsetGuard, StallWatch]:
    guard = OffsetGuard(["order-created", "order-paid"])
    tps = {"p0": P0, "p1": P1, "paid": PAID}
    for name, position in positions.items():
        guard.assign(tps[name], position)
    return guard, StallWatch(guard, AFTER_S)


@pytest.mark.parametrize(
    ("highwater", "later_s", "due"),
    [
        pytest.param(13, AFTER_S, [(P0, 10)], id="short of its log end for the whole window"),
        pytest.param(13, AFTER_S - 0.1, [], id="not for the whole window yet"),
        pytest.param(10, 60.0, [], id="at its log end: nothing to fetch"),
        pytest.param(None, 60.0, [], id="log end not known yet"),
    ],
)
def test_a_partition_is_due_when_it_stands_short_of_its_log_end_for_the_window(
    highwater: int | None, later_s: float, due: list[tuple[TP, int]]
) -> None:
    _, watch = watch_at(p0=10)
    assert watch.due(0.0, {P0: highwater}, free) == []
    assert watch.due(later_s, {P0: highwater}, free) == due


def test_a_partition_that_moves_is_never_due() -> None:
    guard, watch = watch_at(p0=10)
    for second in range(30):
        assert guard.admit(P0, 10 + second).verdict.value == "admit"
        assert watch.due(float(second), {P0: 100}, free) == []


def test_the_window_starts_again_when_the_expected_offset_moves() -> None:
    guard, watch = watch_at(p0=10)
    watch.due(0.0, {P0: 13}, free)
    guard.admit(P0, 10)
    watch.due(8.0, {P0: 13}, free)
    assert watch.due(12.0, {P0: 13}, free) == []  # 4 s at 11
    assert watch.due(18.0, {P0: 13}, free) == [(P0, 11)]


def test_sought_back_once_per_log_end() -> None:
    # a log that ends in offsets without records (transaction markers): one seek back, then the
    # partition waits for its next record (the guard's gap rule takes it)
    _, watch = watch_at(p0=10)
    watch.due(0.0, {P0: 11}, free)
    assert watch.due(10.0, {P0: 11}, free) == [(P0, 10)]
    assert watch.due(100.0, {P0: 11}, free) == []
    assert watch.due(101.0, {P0: 12}, free) == []  # its next record: a new window from now
    assert watch.due(110.0, {P0: 12}, free) == []
    assert watch.due(111.0, {P0: 12}, free) == [(P0, 10)]


def test_a_blocked_agent_is_waited_for_unless_another_partition_of_its_topic_moved() -> None:
    guard, watch = watch_at(p0=10, p1=20, paid=5)
    watch.due(0.0, {P0: 13, P1: 25, PAID: 9}, blocked)
    # the database is slow: no partition moves, every agent has all its batches in flight
    assert watch.due(30.0, {P0: 13, P1: 25, PAID: 9}, blocked) == []
    # the created agent takes events of partition 1 again; partition 0 still stands
    guard.admit(P1, 20)
    assert watch.due(31.0, {P0: 13, P1: 25, PAID: 9}, blocked) == [(P0, 10)]


def test_a_move_before_the_last_look_does_not_make_a_blocked_agent_free() -> None:
    guard, watch = watch_at(p0=10, p1=20)
    watch.due(0.0, {P0: 13, P1: 25}, blocked)
    guard.admit(P1, 20)  # its last batch before every batch slot filled up
    watch.due(1.0, {P0: 13, P1: 25}, blocked)
    assert watch.due(30.0, {P0: 13, P1: 25}, blocked) == []


def test_a_rebalance_or_a_suspended_flow_restarts_the_window() -> None:
    _, watch = watch_at(p0=10)
    watch.due(0.0, {P0: 13}, free)
    watch.restart(9.0)
    assert watch.due(12.0, {P0: 13}, free) == []
    assert watch.due(19.0, {P0: 13}, free) == [(P0, 10)]


def test_revoked_partitions_are_forgotten() -> None:
    guard, watch = watch_at(p0=10)
    watch.due(0.0, {P0: 13}, free)
    guard.forget([P0])
    assert watch.due(20.0, {P0: 13}, free) == []  # no longer the guard's
    guard.assign(P0, 10)  # assigned again: a new window
    assert watch.due(21.0, {P0: 13}, free) == []
    assert watch.due(31.0, {P0: 13}, free) == [(P0, 10)]
