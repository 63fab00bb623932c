"""OffsetGuard: which order events are processed, and which offsets may be committed."""

from __future__ import annotations

import pytest

from streams.offsets import Decision, OffsetGuard, Verdict

TP = ("order-created", 3)
ADMIT, DROP, SEEK, RESEEK = Verdict.ADMIT, Verdict.DROP, Verdict.SEEK, Verdict.RESEEK


def guard_at(position: int) -> OffsetGuard:
    guard = OffsetGuard(["order-created"])
    guard.assign(TP, position)
    return guard


@pytest.mark.parametrize(
    ("arrivals", "verdicts", "expected_after"),
    [
        pytest.param([10, 11, 12], [ADMIT, ADMIT, ADMIT], 13, id="in order"),
        pytest.param([10, 11, 10, 11, 12], [ADMIT, ADMIT, DROP, DROP, ADMIT], 13, id="repeats"),
        pytest.param([9, 10], [DROP, ADMIT], 11, id="below the seek position"),
        # a batch fetched before the rebalance arrives after the seek to the committed offset
        pytest.param([15, 16, 17, 10, 11], [SEEK, RESEEK, RESEEK, ADMIT, ADMIT], 12, id="stale"),
        # the re-fetch overtakes what was still in flight: a new jump from the new position
        pytest.param([15, 10, 16, 11], [SEEK, ADMIT, SEEK, ADMIT], 12, id="interleaved"),
        # a lower jump than the one being sought back from is the nearer record: seek again
        pytest.param([15, 13, 10], [SEEK, SEEK, ADMIT], 11, id="lower jump"),
    ],
)
def test_admission(arrivals: list[int], verdicts: list[Verdict], expected_after: int) -> None:
    guard = guard_at(10)
    decisions = [guard.admit(TP, offset) for offset in arrivals]
    assert [d.verdict for d in decisions] == verdicts
    assert all(d.seek_to is not None for d in decisions if d.verdict in (SEEK, RESEEK))
    assert guard.expected(TP) == expected_after


def test_a_jump_seeks_back_to_the_expected_offset() -> None:
    guard = guard_at(10)
    assert guard.admit(TP, 14) == Decision(SEEK, seek_to=10)
    assert guard.admit(TP, 15) == Decision(RESEEK, seek_to=10)


def test_a_jump_that_comes_back_after_two_seeks_is_a_real_gap() -> None:
    guard = guard_at(10)
    assert guard.admit(TP, 14).verdict is SEEK
    guard.sought(TP, 10)
    assert guard.admit(TP, 14) == Decision(RESEEK, seek_to=10)  # once may be a stale copy
    guard.sought(TP, 10)
    assert guard.admit(TP, 14) == Decision(Verdict.ADMIT_AFTER_GAP, gap=(10, 14))
    assert guard.expected(TP) == 15
    guard.settle(TP, [14])
    assert guard.committable(TP) == 15  # the gap counts as done once 14 is


def test_a_jump_handed_over_again_before_its_seek_went_out_is_not_a_gap() -> None:
    # A rolling restart: one batch held the stale record at 144 twice. Taken for the broker's
    # answer, the second copy skipped 97..143; the seek back had not even been sent.
    guard = guard_at(97)
    assert guard.admit(TP, 144) == Decision(SEEK, seek_to=97)
    for _ in range(3):
        assert guard.admit(TP, 144) == Decision(RESEEK, seek_to=97)
    guard.sought(TP, 97)
    assert guard.admit(TP, 97).verdict is ADMIT
    assert guard.expected(TP) == 98
    guard.settle(TP, [97])
    assert guard.committable(TP) == 98


def test_a_stale_copy_after_one_seek_is_not_enough() -> None:
    guard = guard_at(10)
    assert guard.admit(TP, 14).verdict is SEEK
    guard.sought(TP, 10)
    assert guard.admit(TP, 14).verdict is RESEEK  # still queued when the seek went out
    assert guard.admit(TP, 14).verdict is RESEEK  # no seek since: counts for nothing
    guard.sought(TP, 10)
    assert guard.admit(TP, 10).verdict is ADMIT  # the broker's answer
    assert guard.committable(TP) == 10  # nothing skipped


def test_a_seek_to_another_offset_confirms_nothing() -> None:
    guard = guard_at(10)
    assert guard.admit(TP, 14).verdict is SEEK
    guard.sought(TP, 12)  # not where this jump seeks back to
    guard.sought(TP, 12)
    assert guard.admit(TP, 14).verdict is RESEEK
    assert guard.admit(TP, 14).verdict is RESEEK


def test_an_unassigned_partition_admits_nothing() -> None:
    guard = OffsetGuard(["order-created"])
    assert guard.admit(TP, 0).verdict is DROP
    guard.assign(TP, 0)
    guard.forget([TP])
    assert guard.admit(TP, 0).verdict is DROP
    assert guard.committable(TP) is None


@pytest.mark.parametrize(
    ("settled", "committable"),
    [
        ([], 10),
        ([10, 11], 12),
        ([11, 12], 10),  # 10 is still in flight: nothing past it is committed
        ([12, 11, 10], 13),
        ([9, 10], 11),  # below the position: committed before, ignored
    ],
)
def test_commits_stop_at_the_first_unsettled_offset(settled: list[int], committable: int) -> None:
    guard = guard_at(10)
    for offset in settled:
        guard.settle(TP, [offset])
    assert guard.committable(TP) == committable


def test_a_seek_back_keeps_what_was_settled() -> None:
    guard = guard_at(10)
    for offset in range(10, 20):
        guard.admit(TP, offset)
    guard.settle(TP, range(10, 15))
    guard.assign(TP, 12)  # sought back to an older committed position: redelivery
    assert guard.committable(TP) == 15
    assert guard.expected(TP) == 12
    assert guard.admit(TP, 12).verdict is ADMIT


def test_a_new_position_beyond_the_frontier_moves_it() -> None:
    guard = guard_at(10)
    guard.settle(TP, [25])
    guard.assign(TP, 20)  # the group committed 20 elsewhere
    assert guard.committable(TP) == 20
    guard.settle(TP, range(20, 25))
    assert guard.committable(TP) == 26


def test_settles_for_a_forgotten_partition_are_ignored() -> None:
    guard = guard_at(10)
    guard.forget([TP])
    guard.settle(TP, [10])
    guard.assign(TP, 10)
    assert guard.committable(TP) == 10


def test_only_the_named_topics_are_guarded() -> None:
    guard = OffsetGuard(["order-created", "order-paid"])
    assert guard.guards("order-paid") and not guard.guards("stock-changed")
