"""The batch planner, without a database: decisions, rows written, messages published."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from service.domain import validation as v
from service.domain.commands import Commit, Expire, Release, Source
from service.domain.errors import AlreadyExists, InsufficientStock, NotFound
from service.domain.planner import plan_batch
from service.domain.snapshot import OrderRow, ReservationRow, Snapshot, StockRow, Warehouse
from service.domain.values import (
    Item,
    Levels,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Sku,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = v.Limits()
P = Sku("p")


def snapshot(available=10, **orders):
    return Snapshot(
        orders=dict(orders),
        stocks={"s1": StockRow("s1", P, "w", Levels(available, 0, available), 1)},
        warehouses={"w": Warehouse("w", 1, True)},
    )


def run(snap, *commands, duplicates=frozenset()):
    ids = (f"r{i}" for i in itertools.count())
    return plan_batch(
        snap, commands, duplicates=duplicates, now=NOW, allow_split=True, new_id=lambda: next(ids)
    )


def reserve(order, quantity, source=Source.STREAM, event=None):
    items = [{"product_id": "p", "quantity": quantity}]
    return v.reserve(order, items, 60, LIMITS, source=source, event_id=event)


def test_reserves_in_arrival_order_until_the_stock_runs_out():
    snap = snapshot(available=5)
    plan = run(snap, reserve("a", 3), reserve("b", 3), reserve("c", 2))
    assert [r.state for r in plan.results] == [
        OrderState.RESERVED,
        OrderState.REJECTED,
        OrderState.RESERVED,
    ]
    assert snap.stocks["s1"].levels == Levels(0, 5, 5)
    assert snap.stocks["s1"].version == 3
    assert len(plan.movements) == 2
    rejected = plan.reservation_events[1].payload
    assert rejected["status"] == "REJECTED"
    assert rejected["shortages"] == [
        {
            "product_id": "p",
            "variant_id": None,
            "warehouse_id": None,
            "requested": 3,
            "available": 2,
        }
    ]
    assert len(plan.stock_changes) == 1  # one stock-changed per row per batch, the last state


def test_api_shortage_raises_and_changes_nothing():
    snap = snapshot(available=1)
    plan = run(snap, reserve("a", 2, Source.API))
    assert isinstance(plan.results[0], InsufficientStock)
    assert not plan.orders and not plan.movements and not plan.reservation_events


def test_one_bad_command_does_not_fail_its_batch_mates():
    plan = run(
        snapshot(),
        v.reserve("x", [{"product_id": "zz", "quantity": 1}], 60, LIMITS),
        reserve("a", 1, Source.API),
    )
    assert isinstance(plan.results[0], NotFound)
    assert plan.results[1].state is OrderState.RESERVED


def test_create_pay_cancel_in_one_batch():
    snap = snapshot()
    plan = run(
        snap,
        reserve("a", 4),
        Commit("a", Source.STREAM, "e2"),
        Release("a", None, Source.STREAM, "e3"),
    )
    assert [r.state for r in plan.results] == [
        OrderState.RESERVED,
        OrderState.COMMITTED,
        OrderState.COMMITTED,
    ]
    assert [e.payload["status"] for e in plan.reservation_events] == [
        "RESERVED",
        "COMMITTED",
        "CANCEL_AFTER_COMMIT",
    ]
    assert snap.stocks["s1"].levels == Levels(6, 0, 6)


def test_paid_before_created_reserves_and_commits_at_once():
    snap = snapshot()
    plan = run(snap, Commit("a", Source.STREAM, "e1"), reserve("a", 4, event="e2"))
    assert plan.results[0].state is OrderState.PAID_EARLY
    assert plan.results[1].state is OrderState.COMMITTED
    assert [r.status for r in plan.new_reservations] == [ReservationStatus.COMMITTED]
    assert snap.stocks["s1"].levels == Levels(6, 0, 6)


def test_cancel_before_create_never_reserves():
    snap = snapshot()
    plan = run(snap, Release("a", "changed mind", Source.STREAM, "e1"), reserve("a", 4))
    assert plan.results[1].state is OrderState.RELEASED
    assert not plan.new_reservations and snap.stocks["s1"].levels == Levels(10, 0, 10)


def test_redelivered_event_has_no_second_effect():
    plan = run(snapshot(), reserve("a", 4, event="e1"), duplicates=frozenset({0}))
    assert plan.results[0].duplicate and not plan.movements


def test_api_reserve_again_same_items_is_idempotent_other_items_already_exist():
    snap = snapshot()
    run(snap, reserve("a", 4, Source.API))
    again = run(snap, reserve("a", 4, Source.API), reserve("a", 5, Source.API))
    assert again.results[0].duplicate and again.results[0].state is OrderState.RESERVED
    assert isinstance(again.results[1], AlreadyExists)


def _reserved_order(expires_at):
    order = OrderRow("a", OrderState.RESERVED, (Item(P, 4),), 60, expires_at, 1)
    snap = snapshot(available=6, a=order)
    snap.stocks["s1"].levels = Levels(6, 4, 10)
    snap.reservations["a"] = [
        ReservationRow("r", "a", "s1", P, "w", 4, ReservationStatus.PENDING, expires_at)
    ]
    return snap


@pytest.mark.parametrize(
    ("expires_in", "state"), [(-1, OrderState.EXPIRED), (+1, OrderState.RESERVED)]
)
def test_expire_only_when_due(expires_in, state):
    snap = _reserved_order(NOW + timedelta(seconds=expires_in))
    plan = run(snap, Expire("a"))
    assert plan.results[0].state is state


def test_paid_after_expiry_reserves_again_or_fails():
    snap = _reserved_order(NOW - timedelta(seconds=1))
    plan = run(snap, Expire("a"), Commit("a", Source.STREAM, "e9"))
    assert [r.state for r in plan.results] == [OrderState.EXPIRED, OrderState.COMMITTED]
    snap = _reserved_order(NOW - timedelta(seconds=1))
    plan = run(snap, Expire("a"), reserve("b", 8), Commit("a", Source.STREAM, "e9"))
    assert plan.results[2].state is OrderState.COMMIT_FAILED
    assert plan.reservation_events[-1].payload["status"] == ResultStatus.COMMIT_FAILED.value


def test_a_product_without_variant_sorts_beside_its_variants():
    assert sorted([Sku("p", "v"), Sku("p"), Sku("a", "z")]) == [
        Sku("a", "z"),
        Sku("p"),
        Sku("p", "v"),
    ]
