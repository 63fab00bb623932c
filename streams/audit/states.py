"""Which ledger states an order may be in, given the set of its events that were applied.

Explored from the stream state machine (``STREAM_TABLE``), never re-typed: every event kind
is applied once, in any order, and between them the order may also be expired (whenever the
table lets an expiry act) or committed / released by an RPC (the API table's COMMIT and
RELEASE actions, which only a RESERVED order allows). A reserve may succeed or fail.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from functools import lru_cache

from service.domain.commands import OrderEventKind
from service.domain.order_machine import API_TABLE, STREAM_TABLE, Action, Step
from service.domain.values import OrderState

State = OrderState | None

# RPCs that may land on an order at any time: CommitReservation and ReleaseReservation
_API_KINDS = (OrderEventKind.PAID, OrderEventKind.CANCELLED)
_API_ACTIONS = frozenset({Action.COMMIT, Action.RELEASE})


def _after(state: State, step: Step) -> set[State]:
    """The states a step may leave the order in (both outcomes of a reserve)."""
    outcomes = {s for s in (step.success, step.failure) if s is not None}
    return set(outcomes) if outcomes else {state}


def _spontaneous(state: State) -> set[State]:
    """States reachable without an order event: an expiry, or an RPC commit / release."""
    found = _after(state, STREAM_TABLE[state][OrderEventKind.EXPIRE])
    for kind in _API_KINDS:
        step = API_TABLE[state].get(kind)
        if step is not None and step.action in _API_ACTIONS:
            found |= _after(state, step)
    return found


@lru_cache(maxsize=64)
def _reachable(kinds: frozenset[OrderEventKind]) -> frozenset[State]:
    start: tuple[State, frozenset[OrderEventKind]] = (None, kinds)
    seen = {start}
    queue = deque([start])
    final: set[State] = set()
    while queue:
        state, remaining = queue.popleft()
        if not remaining:
            final.add(state)
        moves = [(after, remaining) for after in _spontaneous(state)]
        for kind in remaining:
            rest = remaining - {kind}
            moves += [(after, rest) for after in _after(state, STREAM_TABLE[state][kind])]
        for move in moves:
            if move not in seen:
                seen.add(move)
                queue.append(move)
    return frozenset(final)


def reachable_states(kinds: Iterable[OrderEventKind]) -> frozenset[State]:
    """Every ledger state (``None``: no row) the order may end in once ``kinds`` applied."""
    return _reachable(frozenset(kinds))


def state_order(state: State) -> int:
    """For printing: no row first, then the states as ``OrderState`` declares them."""
    return -1 if state is None else list(OrderState).index(state)
