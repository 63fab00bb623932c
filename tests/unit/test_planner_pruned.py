"""A pruned order (a tombstone: final state, no items, no lines): a late event changes nothing
and reserves nothing; what only tells the pipeline still does; an RPC that would change it is
refused. Pure: no database."""

import pytest

from service.domain.commands import Commit, Expire, OrderEventKind, Release, Return, Source
from service.domain.errors import WrongState
from service.domain.order_machine import Action, next_step, pruned_step
from service.domain.snapshot import OrderRow
from service.domain.values import OrderState as S
from service.domain.values import ResultStatus
from tests.unit.test_planner_lifecycle import reserve, run, snapshot

FINISHED = (S.COMMITTED, S.RELEASED, S.EXPIRED, S.COMMIT_FAILED, S.REJECTED)


@pytest.mark.parametrize("state", FINISHED)
@pytest.mark.parametrize("event", list(OrderEventKind))
def test_a_pruned_order_never_takes_a_step_that_changes_it(state: S, event: OrderEventKind) -> None:
    for source in (Source.STREAM, Source.API):
        live = next_step(state, event, source)
        step = pruned_step(live, source)
        if live.action in (Action.DUPLICATE, Action.REPORT, Action.WRONG_STATE):
            assert step == live
        elif live.action is Action.RETURN and source is Source.STREAM:
            # a return is new, not a late copy: the pipeline hears it is refused
            assert step.report is ResultStatus.RETURN_REFUSED
        else:
            expected = Action.DUPLICATE if source is Source.STREAM else Action.WRONG_STATE
            assert step.action is expected


def tombstone(state: S) -> OrderRow:
    return OrderRow("o", state, (), None, None, 0, pruned=True)


# state, stream command, what the live order would do -> what the pruned one does
CASES = [
    (S.COMMITTED, reserve("o", ("p", 2)), None),
    (S.EXPIRED, reserve("o", ("p", 2)), None),
    (S.REJECTED, reserve("o", ("p", 2)), None),
    (S.EXPIRED, Commit("o", Source.STREAM, event_id="o-paid"), None),  # live: reserve again
    (S.REJECTED, Commit("o", Source.STREAM, event_id="o-paid"), None),
    (S.EXPIRED, Release("o", source=Source.STREAM, event_id="o-c"), None),  # live: RELEASED
    (S.COMMITTED, Release("o", source=Source.STREAM, event_id="o-c"), "CANCEL_AFTER_COMMIT"),
    (S.RELEASED, Expire("o"), None),
]


@pytest.mark.parametrize(("state", "command", "report"), CASES)
def test_a_late_event_for_a_pruned_order_reserves_nothing_and_records_nothing(
    state: S, command: object, report: str | None
) -> None:
    snap = snapshot()
    snap.orders["o"] = tombstone(state)
    plan = run(snap, command)
    assert not plan.orders and not plan.new_reservations and not plan.stock_changes
    assert not plan.transitions  # the history went with the order
    assert plan.results[0].state is state
    statuses = [e.payload["status"] for e in plan.reservation_events]
    assert statuses == ([report] if report else [])


def test_an_rpc_that_would_change_a_pruned_order_is_refused() -> None:
    snap = snapshot()
    snap.orders["o"] = tombstone(S.EXPIRED)
    plan = run(snap, Commit("o", Source.API))
    error = plan.results[0]
    assert isinstance(error, WrongState) and "pruned" in str(error)
    # a repeated ReserveStock of a pruned committed order is a duplicate (its items are gone)
    snap.orders["o"] = tombstone(S.COMMITTED)
    plan = run(snap, reserve("o", ("p", 2), source=Source.API))
    assert plan.results[0].duplicate and not plan.new_reservations
    assert ResultStatus.COMMITTED not in [e.payload["status"] for e in plan.reservation_events]


def test_a_return_of_a_pruned_order_is_refused_saying_why() -> None:
    snap = snapshot()
    snap.orders["o"] = tombstone(S.COMMITTED)
    plan = run(snap, Return("o", source=Source.STREAM, event_id="o-r"))
    assert not plan.stock_changes and not plan.transitions
    [event] = plan.reservation_events
    assert event.payload["status"] == "RETURN_REFUSED"
    assert "pruned by retention" in event.payload["reason"]
    plan = run(snap, Return("o", source=Source.API))
    error = plan.results[0]
    assert isinstance(error, WrongState) and "pruned" in str(error)
