"""The planner's reservation lifecycle: extension, partial reservations, the order's history.
Pure: no database."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from service.domain import validation as v
from service.domain.commands import Commit, Expire, Extend, Release, Reserve, Source
from service.domain.errors import NotFound, WrongState
from service.domain.planner import plan_batch
from service.domain.snapshot import Snapshot, StockRow, Warehouse
from service.domain.values import Levels, OrderState, ResultStatus, Sku

NOW = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
LIMITS = v.Limits()
P, Q = Sku("p"), Sku("q")


def snapshot(p=10, q=10):
    return Snapshot(
        stocks={
            "sp": StockRow("sp", P, "w", Levels(p, 0, p), 1),
            "sq": StockRow("sq", Q, "w", Levels(q, 0, q), 1),
        },
        warehouses={"w": Warehouse("w", 1, True)},
    )


def run(snap, *commands, now=NOW):
    ids = (f"r{i}" for i in itertools.count())
    return plan_batch(
        snap, commands, duplicates=frozenset(), now=now, allow_split=True, new_id=lambda: next(ids)
    )


def reserve(order, *lines, partial=False, source=Source.STREAM, ttl=60):
    items = [{"product_id": p, "quantity": q} for p, q in lines]
    command = v.reserve(order, items, ttl, LIMITS, source=source, event_id=f"{order}-created")
    return Reserve(**{**_fields(command), "allow_partial": partial})


def _fields(command):
    return {name: getattr(command, name) for name in command.__slots__}


def published(plan):
    return [(e.order_id, e.payload["status"]) for e in plan.reservation_events]


# -- extension -------------------------------------------------------------------------------


def test_extend_moves_a_reserved_orders_deadline_and_publishes_it():
    snap = snapshot()
    run(snap, reserve("o", ("p", 2)))
    later = NOW + timedelta(seconds=30)
    plan = run(snap, Extend("o", 600, Source.API), now=later)
    result = plan.results[0]
    assert result.published is ResultStatus.EXTENDED
    assert result.expires_at == (later + timedelta(seconds=600)).replace(microsecond=0)
    assert snap.orders["o"].expires_at == result.expires_at
    event = plan.reservation_events[0].payload
    assert event["status"] == "EXTENDED" and event["expires_at"].startswith("2026-01-01T12:10:30")
    assert [t.cause for t in plan.transitions] == ["rpc:ExtendReservation"]


def test_extending_again_within_the_second_changes_nothing():
    snap = snapshot()
    run(snap, reserve("o", ("p", 2)))
    first = run(snap, Extend("o", 600, Source.API))
    again = run(snap, Extend("o", 600, Source.API), now=NOW + timedelta(milliseconds=500))
    assert first.results[0].expires_at == again.results[0].expires_at
    assert again.results[0].published is None and again.reservation_events == []
    assert not again.orders


def test_an_extended_order_expires_at_its_new_deadline_not_the_old():
    snap = snapshot()
    run(snap, reserve("o", ("p", 2), ttl=2))
    run(snap, Extend("o", 30, Source.API), now=NOW + timedelta(seconds=1))
    at_five = run(snap, Expire("o"), now=NOW + timedelta(seconds=5))
    assert at_five.results[0].state is OrderState.RESERVED and at_five.results[0].duplicate
    after = run(snap, Expire("o"), now=NOW + timedelta(seconds=32))
    assert after.results[0].state is OrderState.EXPIRED


def test_extend_after_commit_is_refused_over_the_api_and_reported_on_the_stream():
    snap = snapshot()
    run(snap, reserve("o", ("p", 2)), Commit("o", Source.API))
    api = run(snap, Extend("o", 60, Source.API))
    assert isinstance(api.results[0], WrongState) and "COMMITTED" in str(api.results[0])
    stream = run(snap, Extend("o", 60, Source.STREAM, event_id="x-1"))
    assert published(stream) == [("o", "NOT_EXTENDED")]
    assert stream.reservation_events[0].payload["reason"] == "order is COMMITTED"
    assert snap.orders["o"].state is OrderState.COMMITTED


def test_extend_of_an_unknown_order():
    api = run(snapshot(), Extend("nobody", 60, Source.API))
    assert isinstance(api.results[0], NotFound)
    snap = snapshot()
    stream = run(snap, Extend("nobody", 60, Source.STREAM, event_id="x-2"))
    assert published(stream) == [("nobody", "NOT_EXTENDED")]
    assert stream.reservation_events[0].payload["reason"] == "unknown order"
    assert "nobody" not in snap.orders and not stream.transitions


# -- partial reservations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stock_p", "stock_q", "lines", "state", "got"),
    [
        pytest.param(10, 10, [("p", 3), ("q", 4)], OrderState.RESERVED, [3, 4], id="all there"),
        pytest.param(2, 10, [("p", 3), ("q", 4)], OrderState.RESERVED, [2, 4], id="one line short"),
        pytest.param(0, 1, [("p", 3), ("q", 4)], OrderState.RESERVED, [0, 1], id="one unit"),
        pytest.param(0, 0, [("p", 3), ("q", 4)], OrderState.REJECTED, [], id="nothing at all"),
    ],
)
def test_a_partial_order_reserves_what_each_line_can(stock_p, stock_q, lines, state, got):
    snap = snapshot(stock_p, stock_q)
    plan = run(snap, reserve("o", *lines, partial=True))
    result = plan.results[0]
    assert result.state is state
    assert [line.reserved for line in result.lines] == got
    for line, (_, requested) in zip(result.lines, lines, strict=False):
        assert line.reserved + line.short == requested
    if state is OrderState.RESERVED:
        event = plan.reservation_events[0].payload
        assert [(x["requested"], x["reserved"], x["short"]) for x in event["lines"]] == [
            (q, r, q - r) for (_, q), r in zip(lines, got, strict=True)
        ]
        assert sum(r.quantity for r in plan.new_reservations) == sum(got)
        assert snap.orders["o"].allow_partial


def test_all_or_nothing_is_unchanged():
    plan = run(snapshot(2, 10), reserve("o", ("p", 3), ("q", 4)))
    assert plan.results[0].state is OrderState.REJECTED
    assert "lines" not in plan.reservation_events[0].payload
    assert plan.results[0].lines == ()


def test_release_and_commit_act_on_what_a_partial_order_reserved():
    snap = snapshot(2, 10)
    run(snap, reserve("o", ("p", 3), ("q", 4), partial=True))
    assert snap.stocks["sp"].levels == Levels(0, 2, 2)
    run(snap, Release("o", source=Source.API))
    assert snap.stocks["sp"].levels == Levels(2, 0, 2)
    assert snap.stocks["sq"].levels == Levels(10, 0, 10)


# -- history ---------------------------------------------------------------------------------


def test_every_transition_is_recorded_with_its_cause():
    snap = snapshot()
    plans = [
        run(snap, reserve("o", ("p", 1))),
        run(snap, Extend("o", 120, Source.API)),
        run(snap, Commit("o", Source.STREAM, event_id="o-paid")),
        run(snap, Release("o", source=Source.STREAM, event_id="o-cancelled")),
    ]
    steps = [(t.from_state, t.to_state, t.published, t.cause) for p in plans for t in p.transitions]
    assert steps == [
        (None, OrderState.RESERVED, ResultStatus.RESERVED, "o-created"),
        (OrderState.RESERVED, OrderState.RESERVED, ResultStatus.EXTENDED, "rpc:ExtendReservation"),
        (OrderState.RESERVED, OrderState.COMMITTED, ResultStatus.COMMITTED, "o-paid"),
        (
            OrderState.COMMITTED,
            OrderState.COMMITTED,
            ResultStatus.CANCEL_AFTER_COMMIT,
            "o-cancelled",
        ),
    ]


def test_an_expiry_is_caused_by_the_expiry():
    snap = snapshot()
    run(snap, reserve("o", ("p", 1), ttl=1))
    plan = run(snap, Expire("o"), now=NOW + timedelta(seconds=5))
    assert [(t.to_state, t.cause) for t in plan.transitions] == [(OrderState.EXPIRED, "expiry")]
