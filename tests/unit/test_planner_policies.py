"""The planner with stock policies: backorders reserved and filled, safety stock kept back,
policies set by command, alerts once per crossing. Pure: no database."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from service.domain import validation as v
from service.domain.commands import Commit, Release, SetStockPolicy, Source, UpdateStock
from service.domain.errors import FailedPrecondition, InsufficientStock, VersionMismatch
from service.domain.planner import plan_batch
from service.domain.policies import StockAlert
from service.domain.snapshot import ReservationRow, Snapshot, StockRow, Warehouse
from service.domain.values import (
    Item,
    Levels,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Sku,
    StockOperation,
    StockPolicy,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = v.Limits()
P = Sku("p")


def row(stock_id="s1", warehouse="w", available=0, reserved=0, policy=StockPolicy(), **kw):
    levels = Levels(available, reserved, available + reserved)
    return StockRow(stock_id, P, warehouse, levels, 1, policy=policy, **kw)


def snapshot(*rows, backorders=(), reservations=None):
    return Snapshot(
        stocks={r.stock_id: r for r in rows},
        warehouses={
            "w": Warehouse("w", 1, True),
            "w2": Warehouse("w2", 2, True),
        },
        reservations=reservations or {},
        backorders=list(backorders),
    )


def run(snap, *commands):
    ids = (f"r{i}" for i in itertools.count())
    return plan_batch(
        snap, commands, duplicates=frozenset(), now=NOW, allow_split=True, new_id=lambda: next(ids)
    )


def reserve(order, quantity, source=Source.STREAM):
    items = [{"product_id": "p", "quantity": quantity}]
    return v.reserve(order, items, 60, LIMITS, source=source, event_id=f"e-{order}")


def add(quantity, warehouse="w"):
    return UpdateStock(P, warehouse, StockOperation.ADD, quantity, "restock")


def set_policy(warehouse="w", version=None, **policy):
    return SetStockPolicy(P, warehouse, StockPolicy(**policy), "policy", expected_version=version)


def backordered_line(order, quantity, backordered, minutes_ago, stock_id="s1", status="PENDING"):
    return ReservationRow(
        f"old-{order}",
        order,
        stock_id,
        P,
        "w",
        quantity,
        ReservationStatus(status),
        NOW + timedelta(minutes=5),
        backordered=backordered,
        created_at=NOW - timedelta(minutes=minutes_ago),
    )


def events(plan, status):
    return [e.payload for e in plan.reservation_events if e.payload["status"] == status]


def alerts(plan):
    return [(a.kind, a.warehouse_id, a.sellable) for a in plan.alerts]


# -- reserving against reservable ------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "policy", "quantity", "reserved", "backordered"),
    [
        pytest.param(5, StockPolicy(), 5, True, 0, id="no policy: all of it"),
        pytest.param(5, StockPolicy(), 6, False, 0, id="no policy: never below zero"),
        pytest.param(5, StockPolicy(safety_stock=2), 3, True, 0, id="safety: up to sellable"),
        pytest.param(5, StockPolicy(safety_stock=2), 4, False, 0, id="safety: never into it"),
        pytest.param(5, StockPolicy(safety_stock=5), 1, False, 0, id="only safety stock left"),
        pytest.param(2, StockPolicy(backorder_limit=3), 5, True, 3, id="backorders to the limit"),
        pytest.param(2, StockPolicy(backorder_limit=3), 6, False, 0, id="not beyond the limit"),
        pytest.param(
            5,
            StockPolicy(safety_stock=2, backorder_limit=2),
            5,
            True,
            2,
            id="both: beyond sellable",
        ),
    ],
)
def test_reservations_take_reservable_and_record_backorders(
    available, policy, quantity, reserved, backordered
):
    snap = snapshot(row(available=available, policy=policy))
    plan = run(snap, reserve("a", quantity))
    result = plan.results[0]
    assert result.state is (OrderState.RESERVED if reserved else OrderState.REJECTED)
    if reserved:
        assert [line.backordered for line in result.reservations] == [backordered]
        assert snap.stocks["s1"].backordered == backordered
        assert snap.stocks["s1"].levels.available == available - quantity
        item = events(plan, "RESERVED")[0]["items"][0]
        assert item.get("backordered", 0) == backordered
        assert plan.new_reservations[0].backordered == backordered


def test_an_api_reservation_into_safety_stock_is_insufficient_stock():
    plan = run(
        snapshot(row(available=5, policy=StockPolicy(safety_stock=5))), reserve("a", 1, Source.API)
    )
    assert isinstance(plan.results[0], InsufficientStock)


# -- filling backorders ----------------------------------------------------------------------


def test_a_restock_fills_the_oldest_backorders_first_with_one_event_per_order():
    policy = StockPolicy(backorder_limit=10)
    lines = [backordered_line("old", 3, 3, 10), backordered_line("new", 4, 4, 5)]
    snap = snapshot(row(available=-7, reserved=7, policy=policy, backordered=7), backorders=lines)
    plan = run(snap, add(5))
    assert plan.backorder_fills == {"old-old": 0, "old-new": 2}
    assert snap.stocks["s1"].backordered == 2
    filled = events(plan, "BACKORDER_FILLED")
    assert [e["order_id"] for e in filled] == ["old"]
    snap.backorders = [backordered_line("new", 4, 2, 5)]  # as the next batch loads them
    plan = run(snap, add(2))
    assert plan.backorder_fills == {"old-new": 0}
    assert [e["order_id"] for e in events(plan, "BACKORDER_FILLED")] == ["new"]
    assert snap.stocks["s1"].backordered == 0


def test_an_order_is_filled_only_when_its_lines_on_every_row_are():
    policy = StockPolicy(backorder_limit=10)
    lines = [backordered_line("o", 2, 2, 10), backordered_line("o", 2, 2, 10, stock_id="s2")]
    lines[1] = ReservationRow(**{**_fields(lines[1]), "reservation_id": "other-row"})
    snap = snapshot(
        row(available=-2, reserved=2, policy=policy, backordered=2),
        row("s2", "w2", available=-2, reserved=2, policy=policy, backordered=2),
        backorders=lines,
    )
    plan = run(snap, add(2))
    assert plan.backorder_fills == {"old-o": 0}
    assert events(plan, "BACKORDER_FILLED") == []
    snap.backorders = [lines[1]]  # as the next batch loads them: the first row's is filled
    plan = run(snap, add(5, "w2"))
    assert [e["order_id"] for e in events(plan, "BACKORDER_FILLED")] == ["o"]


def _fields(line):
    return {name: getattr(line, name) for name in line.__slots__}


def test_releasing_a_backordered_order_owes_its_units_no_more_and_fills_others():
    policy = StockPolicy(backorder_limit=10)
    mine = backordered_line("mine", 4, 2, 10)
    other = backordered_line("other", 3, 3, 5)
    snap = snapshot(
        row(available=-5, reserved=7, policy=policy, backordered=5),
        backorders=[mine, other],
        reservations={"mine": [mine]},
    )
    snap.orders["mine"] = _order("mine")
    plan = run(snap, Release("mine", Source.API))
    assert snap.stocks["s1"].levels.available == -1
    # the 4 units come back: 2 were owed by the released line itself, 2 fill the other order
    assert plan.backorder_fills == {"old-mine": 0, "old-other": 1}
    assert snap.stocks["s1"].backordered == 1
    assert events(plan, "BACKORDER_FILLED") == []


def test_a_committed_backorder_stays_owed_until_stock_arrives():
    policy = StockPolicy(backorder_limit=10)
    mine = backordered_line("mine", 4, 4, 10)
    snap = snapshot(
        row(available=-4, reserved=4, policy=policy, backordered=4),
        backorders=[mine],
        reservations={"mine": [mine]},
    )
    snap.orders["mine"] = _order("mine")
    plan = run(snap, Commit("mine", Source.API))
    assert snap.stocks["s1"].levels == Levels(-4, 0, -4)  # units owed: total below zero
    assert snap.stocks["s1"].backordered == 4
    committed = events(plan, "COMMITTED")[0]
    assert committed["items"][0]["backordered"] == 4
    plan = run(snap, add(4))
    assert [e["order_id"] for e in events(plan, "BACKORDER_FILLED")] == ["mine"]


def _order(order_id):
    from service.domain.snapshot import OrderRow

    return OrderRow(order_id, OrderState.RESERVED, (Item(P, 4),), 60, NOW + timedelta(minutes=5), 1)


# -- SetStockPolicy --------------------------------------------------------------------------


def test_set_policy_changes_the_row_with_a_movement_of_no_units():
    snap = snapshot(row(available=5))
    plan = run(snap, set_policy(safety_stock=2, reorder_point=4, backorder_limit=1, version=1))
    level = plan.results[0]
    assert (level.safety_stock, level.reorder_point, level.backorder_limit) == (2, 4, 1)
    assert level.sellable == 3 and level.version == 2
    assert [(m.operation, m.quantity) for m in plan.movements] == [("POLICY", 0)]
    assert plan.stock_changes["s1"].payload(NOW)["sellable"] == 3
    assert alerts(plan) == [(StockAlert.LOW_STOCK, "w", 3)]


def test_set_policy_is_compare_and_set_on_the_version():
    plan = run(snapshot(row(available=5)), set_policy(safety_stock=2, version=7))
    assert isinstance(plan.results[0], VersionMismatch)


def test_a_backorder_limit_below_what_is_backordered_is_refused():
    snap = snapshot(
        row(available=-3, reserved=3, policy=StockPolicy(backorder_limit=5), backordered=3)
    )
    plan = run(snap, set_policy(backorder_limit=2))
    assert isinstance(plan.results[0], FailedPrecondition)
    assert str(plan.results[0]).startswith("backorder_limit")
    assert not plan.movements


def test_lowering_the_safety_stock_fills_backorders():
    policy = StockPolicy(safety_stock=3, backorder_limit=5)
    line = backordered_line("o", 2, 2, 1)
    snap = snapshot(row(available=1, reserved=2, policy=policy, backordered=2), backorders=[line])
    plan = run(snap, set_policy(safety_stock=0, backorder_limit=5))
    assert plan.backorder_fills == {"old-o": 0}
    assert [e["order_id"] for e in events(plan, "BACKORDER_FILLED")] == ["o"]


# -- alerts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "policy", "commands", "expected"),
    [
        pytest.param(
            3,
            StockPolicy(),
            [reserve("a", 3)],
            [(StockAlert.OUT_OF_STOCK, "w", 0), (StockAlert.OUT_OF_STOCK, None, 0)],
            id="sold out: row and SKU",
        ),
        pytest.param(
            0,
            StockPolicy(),
            [add(2)],
            [(StockAlert.BACK_IN_STOCK, "w", 2), (StockAlert.BACK_IN_STOCK, None, 2)],
            id="restocked: row and SKU",
        ),
        pytest.param(10, StockPolicy(), [reserve("a", 3)], [], id="no crossing, no alert"),
        pytest.param(
            5,
            StockPolicy(reorder_point=2),
            [reserve("a", 3)],
            [(StockAlert.LOW_STOCK, "w", 2)],
            id="down to the reorder point",
        ),
        pytest.param(
            5, StockPolicy(reorder_point=2), [reserve("a", 1), reserve("b", 1)], [], id="above it"
        ),
        pytest.param(
            3,
            StockPolicy(),
            [reserve("a", 3), Release("a", Source.API)],
            [],
            id="sold out and back in one batch: nothing anyone could see",
        ),
    ],
)
def test_alerts_once_per_crossing_over_the_batch(available, policy, commands, expected):
    snap = snapshot(row(available=available, policy=policy))
    assert alerts(run(snap, *commands)) == expected


def test_alerts_go_out_on_their_topic_keyed_by_sku():
    snap = snapshot(row(available=1))
    plan = run(snap, reserve("a", 1))
    messages = plan.outbox(
        NOW, stock_changed_topic="sc", reservations_topic="ir", stock_alerts_topic="sa"
    )
    sent = [(m.topic, m.key, m.payload.get("alert")) for m in messages if m.topic == "sa"]
    assert sent == [("sa", "p", "OUT_OF_STOCK"), ("sa", "p", "OUT_OF_STOCK")]
    assert [m.payload["warehouse_id"] for m in messages if m.topic == "sa"] == ["w", None]


def test_result_status_has_backorder_filled():
    assert ResultStatus.BACKORDER_FILLED.value == "BACKORDER_FILLED"
