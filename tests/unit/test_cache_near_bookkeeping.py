"""The near cache's bookkeeping, without Redis: what may be copied, for how long."""

from __future__ import annotations

from typing import Any

import pytest

from service.cache.near import NearCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def near(clock: Clock | None = None, **limits: Any) -> NearCache[str]:
    copies: NearCache[str] = NearCache(
        client=None,  # type: ignore[arg-type]  # no connection is made in these tests
        prefix="inv:sku:",
        max_entries=limits.get("max_entries", 100),
        max_age_s=limits.get("max_age_s", 1.0),
        clock=clock or Clock(),
    )
    copies._live = True  # as if the tracking connections were up
    return copies


def test_a_read_that_no_invalidation_overtook_is_copied() -> None:
    copies = near()
    generation = copies.watch(["a", "b"])
    copies.settle(generation, ["a", "b"], ["A", None])
    assert (copies.get("a"), copies.get("b")) == ("A", None)  # nothing cached in Redis: no copy


@pytest.mark.parametrize(
    "interruption",
    [
        lambda c: c.invalidate(["a"]),  # Redis reported "a" changed while the read was out
        lambda c: c.clear(),  # the tracking connections dropped and came back
    ],
)
def test_a_read_overtaken_by_an_invalidation_is_not_copied(interruption: Any) -> None:
    copies = near()
    generation = copies.watch(["a"])
    interruption(copies)
    copies.settle(generation, ["a"], ["old A"])
    assert copies.get("a") is None


def test_an_overtaken_key_is_forgotten_once_no_read_of_it_is_in_flight() -> None:
    copies = near()
    first = copies.watch(["a"])
    copies.invalidate(["a"])
    copies.settle(first, ["a"], ["old A"])
    later = copies.watch(["a"])
    copies.settle(later, ["a"], ["new A"])
    assert copies.get("a") == "new A"


def test_overlapping_reads_of_one_key_stay_unsafe_until_both_settle() -> None:
    copies = near()
    first, second = copies.watch(["a"]), copies.watch(["a"])
    copies.invalidate(["a"])
    copies.settle(first, ["a"], ["old A"])
    copies.settle(second, ["a"], ["old A"])
    assert copies.get("a") is None


def test_a_failed_read_copies_nothing_and_releases_its_keys() -> None:
    copies = near()
    generation = copies.watch(["a"])
    copies.settle(generation, ["a"], [])
    assert copies.get("a") is None and not copies._in_flight


def test_nothing_is_copied_while_invalidations_are_not_flowing() -> None:
    copies = near()
    copies._live = False
    generation = copies.watch(["a"])
    copies.settle(generation, ["a"], ["A"])
    assert copies.get("a") is None


def test_copies_expire_after_max_age() -> None:
    clock = Clock()
    copies = near(clock, max_age_s=1.0)
    copies.settle(copies.watch(["a"]), ["a"], ["A"])
    clock.now = 1.0
    assert copies.get("a") == "A"
    clock.now = 1.01
    assert copies.get("a") is None and len(copies) == 0


def test_invalidation_and_clear_drop_copies() -> None:
    copies = near()
    copies.settle(copies.watch(["a", "b", "c"]), ["a", "b", "c"], ["A", "B", "C"])
    copies.invalidate(["a", "unknown"])
    assert [copies.get(k) for k in "abc"] == [None, "B", "C"]
    copies.clear()
    assert len(copies) == 0


def test_the_oldest_copies_make_room() -> None:
    copies = near(max_entries=10)
    for index in range(11):
        key = f"k{index}"
        copies.settle(copies.watch([key]), [key], [str(index)])
    assert len(copies) == 9  # a tenth of the room made at once
    assert copies.get("k0") is None and copies.get("k1") is None and copies.get("k10") == "10"
