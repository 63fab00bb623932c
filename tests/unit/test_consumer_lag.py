"""lag_by_label: the consumer lag gauge's figures, per topic label, from log ends and commits."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from streams.offsets import lag_by_label


class TP(NamedTuple):
    topic: str
    partition: int


LABELS = {
    "run1-order-created": "order-created",
    "run1-inventory-reservations": "inventory-reservations",
}
C0, C1 = TP("run1-order-created", 0), TP("run1-order-created", 1)
R0 = TP("run1-inventory-reservations", 0)
OTHER = TP("run1-expiry-changelog", 0)


@pytest.mark.parametrize(
    ("log_ends", "committed", "expected"),
    [
        pytest.param({}, {}, {"order-created": 0, "inventory-reservations": 0}, id="none-assigned"),
        pytest.param(
            {C0: 10, C1: 7, R0: 50},
            {C0: 4, C1: 7, R0: 20},
            {"order-created": 6, "inventory-reservations": 30},
            id="summed-per-label",
        ),
        pytest.param(
            {C0: 10, R0: None},
            {C0: 10},
            {"order-created": 0, "inventory-reservations": 0},
            id="log-end-not-known-yet",
        ),
        pytest.param(
            {R0: 5}, {}, {"order-created": 0, "inventory-reservations": 5}, id="nothing-committed"
        ),
        pytest.param(
            {C0: 3}, {C0: 9}, {"order-created": 0, "inventory-reservations": 0}, id="commit-ahead"
        ),
        pytest.param(
            {OTHER: 100, C0: 2},
            {OTHER: 0},
            {"order-created": 2, "inventory-reservations": 0},
            id="unlabelled-topic-ignored",
        ),
    ],
)
def test_lag_by_label(
    log_ends: dict[TP, int | None], committed: dict[TP, int], expected: dict[str, int]
) -> None:
    assert lag_by_label(log_ends, committed, LABELS) == expected
