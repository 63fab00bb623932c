"""Every cell of the order state machine (docs/architecture.md, Order semantics), for order
events and for RPCs."""

import pytest

from service.domain.commands import OrderEventKind as E
from service.domain.commands import Source
from service.domain.order_machine import Action as A
from service.domain.order_machine import next_step
from service.domain.values import OrderState as S
from service.domain.values import ResultStatus as R

STREAM_CELLS = [
    # state, event, action, success, failure
    (None, E.CREATED, A.RESERVE, S.RESERVED, S.REJECTED),
    (None, E.PAID, A.MOVE, S.PAID_EARLY, None),
    (None, E.CANCELLED, A.MOVE, S.CANCELLED_EARLY, None),
    (None, E.EXPIRE, A.DUPLICATE, None, None),
    (S.RESERVED, E.CREATED, A.DUPLICATE, None, None),
    (S.RESERVED, E.PAID, A.COMMIT, S.COMMITTED, None),
    (S.RESERVED, E.CANCELLED, A.RELEASE, S.RELEASED, None),
    (S.RESERVED, E.EXPIRE, A.EXPIRE, S.EXPIRED, None),
    (S.REJECTED, E.CREATED, A.DUPLICATE, None, None),
    (S.REJECTED, E.PAID, A.RESERVE_AND_COMMIT, S.COMMITTED, S.COMMIT_FAILED),
    (S.REJECTED, E.CANCELLED, A.MOVE, S.RELEASED, None),
    (S.PAID_EARLY, E.CREATED, A.RESERVE_AND_COMMIT, S.COMMITTED, S.COMMIT_FAILED),
    (S.PAID_EARLY, E.PAID, A.DUPLICATE, None, None),
    (S.PAID_EARLY, E.CANCELLED, A.MOVE, S.RELEASED, None),
    (S.CANCELLED_EARLY, E.CREATED, A.MOVE, S.RELEASED, None),
    (S.CANCELLED_EARLY, E.PAID, A.DUPLICATE, None, None),
    (S.CANCELLED_EARLY, E.CANCELLED, A.DUPLICATE, None, None),
    (S.EXPIRED, E.CREATED, A.DUPLICATE, None, None),
    (S.EXPIRED, E.PAID, A.RESERVE_AND_COMMIT, S.COMMITTED, S.COMMIT_FAILED),
    (S.EXPIRED, E.CANCELLED, A.MOVE, S.RELEASED, None),
    (S.COMMITTED, E.CREATED, A.DUPLICATE, None, None),
    (S.COMMITTED, E.PAID, A.DUPLICATE, None, None),
    (S.COMMITTED, E.CANCELLED, A.REPORT, None, None),
    (S.RELEASED, E.CREATED, A.DUPLICATE, None, None),
    (S.RELEASED, E.PAID, A.DUPLICATE, None, None),
    (S.RELEASED, E.CANCELLED, A.DUPLICATE, None, None),
    (S.COMMIT_FAILED, E.CREATED, A.DUPLICATE, None, None),
    (S.COMMIT_FAILED, E.PAID, A.DUPLICATE, None, None),
    (S.COMMIT_FAILED, E.CANCELLED, A.DUPLICATE, None, None),
    # order-extended: only a RESERVED order's hold moves; any other state is reported
    (None, E.EXTENDED, A.REPORT, None, None),
    (S.RESERVED, E.EXTENDED, A.EXTEND, S.RESERVED, None),
    (S.REJECTED, E.EXTENDED, A.REPORT, None, None),
    (S.PAID_EARLY, E.EXTENDED, A.REPORT, None, None),
    (S.CANCELLED_EARLY, E.EXTENDED, A.REPORT, None, None),
    (S.EXPIRED, E.EXTENDED, A.REPORT, None, None),
    (S.COMMITTED, E.EXTENDED, A.REPORT, None, None),
    (S.RELEASED, E.EXTENDED, A.REPORT, None, None),
    (S.COMMIT_FAILED, E.EXTENDED, A.REPORT, None, None),
]


@pytest.mark.parametrize(("state", "event", "action", "success", "failure"), STREAM_CELLS)
def test_stream_table(state, event, action, success, failure):
    step = next_step(state, event, Source.STREAM)
    assert (step.action, step.success, step.failure) == (action, success, failure)


def test_every_state_and_event_has_a_cell():
    covered = {(state, event) for state, event, *_ in STREAM_CELLS}
    for state in [None, *S]:
        for event in (E.CREATED, E.PAID, E.CANCELLED, E.EXTENDED):
            assert (state, event) in covered


def test_cancel_after_commit_is_reported():
    assert next_step(S.COMMITTED, E.CANCELLED, Source.STREAM).report is R.CANCEL_AFTER_COMMIT


API_CELLS = [
    (None, E.PAID, A.NOT_FOUND),
    (None, E.CANCELLED, A.NOT_FOUND),
    (None, E.CREATED, A.RESERVE),
    (S.REJECTED, E.CREATED, A.RESERVE),
    (S.RESERVED, E.CREATED, A.DUPLICATE),
    (S.COMMITTED, E.PAID, A.DUPLICATE),
    (S.COMMITTED, E.CANCELLED, A.WRONG_STATE),
    (S.RELEASED, E.PAID, A.WRONG_STATE),
    (S.RELEASED, E.CANCELLED, A.DUPLICATE),
    (S.EXPIRED, E.PAID, A.RESERVE_AND_COMMIT),
    (S.EXPIRED, E.CREATED, A.WRONG_STATE),
]


@pytest.mark.parametrize(("state", "event", "action"), API_CELLS)
def test_api_table(state, event, action):
    assert next_step(state, event, Source.API).action is action


@pytest.mark.parametrize("state", [None, *S])
def test_an_extension_the_state_does_not_allow(state):
    stream = next_step(state, E.EXTENDED, Source.STREAM)
    api = next_step(state, E.EXTENDED, Source.API)
    if state is S.RESERVED:
        assert stream.action is api.action is A.EXTEND
    else:
        assert (stream.action, stream.report) == (A.REPORT, R.NOT_EXTENDED)
        assert api.action is (A.NOT_FOUND if state is None else A.WRONG_STATE)
