"""The order state machine (docs/architecture.md, Order semantics), as data.

Kafka delivers at least once and the four order topics are not ordered against each other,
so every event is a transition on the order's ledger state. RPCs use the same machine; they
differ where a synchronous caller deserves an error instead of a remembered intent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.commands import OrderEventKind, Source
from service.domain.values import OrderState, ResultStatus


class Action(StrEnum):
    DUPLICATE = "duplicate"  # no effect, nothing published
    RESERVE = "reserve"  # reserve every item or none
    COMMIT = "commit"  # pending reservations become committed (stock leaves)
    RELEASE = "release"  # pending reservations go back to available
    EXPIRE = "expire"  # like release, only when still pending and due
    RESERVE_AND_COMMIT = "reserve_and_commit"  # reserve and commit in one step, or fail
    MOVE = "move"  # change state only (remember an early event, or release with nothing held)
    REPORT = "report"  # no stock or state change, but tell the pipeline (cancel after commit)
    EXTEND = "extend"  # a RESERVED order's hold runs to a new deadline
    RETURN = "return"  # committed units come back (restocked or recorded damaged)
    NOT_FOUND = "not_found"  # RPC on an order we do not know
    WRONG_STATE = "wrong_state"  # RPC that the order's state does not allow


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    success: OrderState | None = None  # state after the action succeeds
    failure: OrderState | None = None  # state when a reserve finds too little stock
    report: ResultStatus | None = None  # what REPORT publishes


_DUP = Step(Action.DUPLICATE)
_RESERVE = Step(Action.RESERVE, OrderState.RESERVED, OrderState.REJECTED)
_RESERVE_AND_COMMIT = Step(
    Action.RESERVE_AND_COMMIT, OrderState.COMMITTED, OrderState.COMMIT_FAILED
)
_TO_RELEASED = Step(Action.MOVE, OrderState.RELEASED)
_EXTEND = Step(Action.EXTEND, OrderState.RESERVED)
# an order-extended event that finds no RESERVED order: nothing changes, the pipeline is told
_NOT_EXTENDED = Step(Action.REPORT, report=ResultStatus.NOT_EXTENDED)
_RETURN = Step(Action.RETURN, OrderState.COMMITTED)
# an order-returned event for an order that is not COMMITTED: nothing changes, the pipeline is
# told why (the state, or "unknown order"); a return is never remembered for later
_RETURN_REFUSED = Step(Action.REPORT, report=ResultStatus.RETURN_REFUSED)

S = OrderState
E = OrderEventKind

STREAM_TABLE: dict[OrderState | None, dict[OrderEventKind, Step]] = {
    None: {
        E.CREATED: _RESERVE,
        E.PAID: Step(Action.MOVE, S.PAID_EARLY),
        E.CANCELLED: Step(Action.MOVE, S.CANCELLED_EARLY),
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.RESERVED: {
        E.CREATED: _DUP,
        E.PAID: Step(Action.COMMIT, S.COMMITTED),
        E.CANCELLED: Step(Action.RELEASE, S.RELEASED),
        E.EXPIRE: Step(Action.EXPIRE, S.EXPIRED),
        E.EXTENDED: _EXTEND,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.REJECTED: {
        E.CREATED: _DUP,
        E.PAID: _RESERVE_AND_COMMIT,
        E.CANCELLED: _TO_RELEASED,
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.PAID_EARLY: {
        E.CREATED: _RESERVE_AND_COMMIT,
        E.PAID: _DUP,
        E.CANCELLED: _TO_RELEASED,
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.CANCELLED_EARLY: {
        E.CREATED: _TO_RELEASED,
        E.PAID: _DUP,
        E.CANCELLED: _DUP,
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.EXPIRED: {
        E.CREATED: _DUP,
        E.PAID: _RESERVE_AND_COMMIT,
        E.CANCELLED: _TO_RELEASED,
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
    S.COMMITTED: {
        E.CREATED: _DUP,
        E.PAID: _DUP,
        E.CANCELLED: Step(Action.REPORT, report=ResultStatus.CANCEL_AFTER_COMMIT),
        E.EXPIRE: _DUP,
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN,
    },
    S.RELEASED: {**dict.fromkeys(E, _DUP), E.EXTENDED: _NOT_EXTENDED, E.RETURNED: _RETURN_REFUSED},
    S.COMMIT_FAILED: {
        **dict.fromkeys(E, _DUP),
        E.EXTENDED: _NOT_EXTENDED,
        E.RETURNED: _RETURN_REFUSED,
    },
}

_NOT_FOUND = Step(Action.NOT_FOUND)
_WRONG = Step(Action.WRONG_STATE)

# An RPC answers now: it cannot remember an intent for an unknown order, and it refuses
# (rather than reports) what the state does not allow. A reservation that an RPC could not
# make changes nothing, so a rejected order may be reserved again. A return of an order that
# is not COMMITTED (an unknown one too) is refused, as the stream reports RETURN_REFUSED.
API_TABLE: dict[OrderState | None, dict[OrderEventKind, Step]] = {
    None: {
        E.CREATED: _RESERVE,
        E.PAID: _NOT_FOUND,
        E.CANCELLED: _NOT_FOUND,
        E.EXTENDED: _NOT_FOUND,
        E.RETURNED: _WRONG,
    },
    S.RESERVED: {**STREAM_TABLE[S.RESERVED], E.RETURNED: _WRONG},
    S.REJECTED: {
        E.CREATED: _RESERVE,
        E.PAID: _RESERVE_AND_COMMIT,
        E.CANCELLED: _TO_RELEASED,
        E.EXTENDED: _WRONG,
        E.RETURNED: _WRONG,
    },
    S.PAID_EARLY: {**STREAM_TABLE[S.PAID_EARLY], E.EXTENDED: _WRONG, E.RETURNED: _WRONG},
    S.CANCELLED_EARLY: {
        E.CREATED: _WRONG,
        E.PAID: _WRONG,
        E.CANCELLED: _DUP,
        E.EXTENDED: _WRONG,
        E.RETURNED: _WRONG,
    },
    S.EXPIRED: {
        E.CREATED: _WRONG,
        E.PAID: _RESERVE_AND_COMMIT,
        E.CANCELLED: _TO_RELEASED,
        E.EXTENDED: _WRONG,
        E.RETURNED: _WRONG,
    },
    S.COMMITTED: {
        E.CREATED: _DUP,
        E.PAID: _DUP,
        E.CANCELLED: _WRONG,
        E.EXTENDED: _WRONG,
        E.RETURNED: _RETURN,
    },
    S.RELEASED: {
        E.CREATED: _WRONG,
        E.PAID: _WRONG,
        E.CANCELLED: _DUP,
        E.EXTENDED: _WRONG,
        E.RETURNED: _WRONG,
    },
    S.COMMIT_FAILED: {
        E.CREATED: _WRONG,
        E.PAID: _WRONG,
        E.CANCELLED: _DUP,
        E.EXTENDED: _WRONG,
        E.RETURNED: _WRONG,
    },
}


def next_step(state: OrderState | None, event: OrderEventKind, source: Source) -> Step:
    table = STREAM_TABLE if source is Source.STREAM else API_TABLE
    return table[state].get(event, _DUP)


# What a pruned order (a tombstone: its final state, no items, no lines) still answers: any
# step that leaves it unchanged, or tells the pipeline without changing it. A step that would
# change it (reserve again, commit, move) is a duplicate for a stream event (it is older than
# the order's retention) and refused for an RPC. A return is neither: it is new, and its lines
# went with the order, so the pipeline is told it is refused.
_UNCHANGING = frozenset({Action.DUPLICATE, Action.REPORT, Action.NOT_FOUND, Action.WRONG_STATE})


def pruned_step(step: Step, source: Source) -> Step:
    if step.action in _UNCHANGING:
        return step
    if source is Source.STREAM:
        return _RETURN_REFUSED if step.action is Action.RETURN else _DUP
    return _WRONG


PUBLISHED: dict[OrderState, ResultStatus] = {
    S.RESERVED: ResultStatus.RESERVED,
    S.REJECTED: ResultStatus.REJECTED,
    S.COMMITTED: ResultStatus.COMMITTED,
    S.COMMIT_FAILED: ResultStatus.COMMIT_FAILED,
    S.RELEASED: ResultStatus.RELEASED,
    S.EXPIRED: ResultStatus.EXPIRED,
}


def published_status(state: OrderState) -> ResultStatus | None:
    """The pipeline hears of every state it can act on; early intents stay internal."""
    return PUBLISHED.get(state)
