"""The planner's stock operations: transfers and returns. Pure: no database."""

import itertools
from datetime import UTC, datetime

import pytest

from service.domain.commands import Commit, Reserve, Return, Source, TransferStock
from service.domain.errors import FailedPrecondition, NotFound, WrongState
from service.domain.planner import plan_batch
from service.domain.results import TransferResult
from service.domain.snapshot import Snapshot, StockRow, Warehouse
from service.domain.values import Item, Levels, ResultStatus, Sku, StockPolicy

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
P = Sku("p")


def snapshot(a=10, b=0, policy_a=StockPolicy(), policy_b=StockPolicy()):
    return Snapshot(
        stocks={
            "sa": StockRow("sa", P, "a", Levels(a, 0, a), 1, policy=policy_a),
            "sb": StockRow("sb", P, "b", Levels(b, 0, b), 1, priority=2, policy=policy_b),
        },
        warehouses={"a": Warehouse("a", 1, True), "b": Warehouse("b", 2, True)},
    )


def run(snap, *commands, duplicates=frozenset()):
    ids = (f"id{i}" for i in itertools.count())
    return plan_batch(
        snap, commands, duplicates=duplicates, now=NOW, allow_split=True, new_id=lambda: next(ids)
    )


def levels(snap, stock_id):
    row = snap.stocks[stock_id]
    return (row.levels.available, row.levels.reserved, row.levels.total)


# -- transfers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "quantity", "refused"),
    [
        ({}, 10, None),
        ({}, 11, "10 free (available 10, reserved 0, safety stock 0)"),
        ({"policy_a": StockPolicy(safety_stock=3)}, 8, "7 free"),
        ({"a": 0}, 1, "0 free"),
    ],
)
def test_a_transfer_moves_free_units_only(setup, quantity, refused):
    snap = snapshot(**setup)
    before = levels(snap, "sa")
    [result] = run(snap, TransferStock(P, "a", "b", quantity)).results
    if refused:
        assert isinstance(result, FailedPrecondition) and refused in result.message
        assert levels(snap, "sa") == before
        return
    assert isinstance(result, TransferResult)
    assert (result.source.available, result.destination.available) == (
        before[0] - quantity,
        quantity,
    )


def test_reserved_units_stay_and_the_two_movements_share_the_transfer_id():
    snap = snapshot()
    run(snap, Reserve("o", (Item(P, 6, "a"),), 60))
    plan = run(snap, TransferStock(P, "a", "b", 4, "rebalance", "admin"))
    [result] = plan.results
    assert isinstance(result, TransferResult)
    assert levels(snap, "sa") == (0, 6, 6) and levels(snap, "sb") == (4, 0, 4)
    assert [(m.operation, m.warehouse_id, m.quantity, m.transfer_id) for m in plan.movements] == [
        ("TRANSFER_OUT", "a", 4, result.transfer_id),
        ("TRANSFER_IN", "b", 4, result.transfer_id),
    ]
    assert set(plan.stock_changes) == {"sa", "sb"}
    [refused] = run(snap, TransferStock(P, "a", "b", 1)).results
    assert isinstance(refused, FailedPrecondition)


def test_a_transfer_in_fills_the_destinations_backorders():
    snap = snapshot(b=0, policy_b=StockPolicy(backorder_limit=5))
    run(snap, Reserve("o", (Item(P, 3, "b"),), 60))
    assert snap.stocks["sb"].backordered == 3
    # what the engine loads for a row with backorders (db/backorder_sql.py)
    snap.backorders = [line for line in snap.reservations["o"] if line.backordered]
    plan = run(snap, TransferStock(P, "a", "b", 3))
    assert snap.stocks["sb"].backordered == 0
    assert [e.payload["status"] for e in plan.reservation_events] == ["BACKORDER_FILLED"]
    [result] = plan.results
    assert isinstance(result, TransferResult) and result.destination.backordered == 0


def test_a_repeated_transfer_moves_nothing_and_unknown_places_are_not_found():
    snap = snapshot()
    [again] = run(snap, TransferStock(P, "a", "b", 2), duplicates=frozenset({0})).results
    assert isinstance(again, TransferResult) and again.duplicate and again.transfer_id == ""
    assert levels(snap, "sa") == (10, 0, 10)
    [unknown] = run(snap, TransferStock(P, "a", "nowhere", 2)).results
    assert isinstance(unknown, NotFound)


# -- returns ---------------------------------------------------------------------------------


def paid(snap, quantity=4):
    run(snap, Reserve("o", (Item(P, quantity, "a"),), 60), Commit("o"))


@pytest.mark.parametrize(
    ("items", "restock", "expected"),
    [
        ((Item(P, 3),), True, (9, 0, 9)),  # back where it left: available and total
        ((), True, (10, 0, 10)),  # no items: all of it
        ((Item(P, 3),), False, (6, 0, 6)),  # damaged: recorded, no level changes
    ],
)
def test_a_return_of_a_committed_order(items, restock, expected):
    snap = snapshot()
    paid(snap)
    plan = run(snap, Return("o", items, restock, "why", Source.STREAM, "e1"))
    [result] = plan.results
    assert result.published is ResultStatus.RETURNED
    assert levels(snap, "sa") == expected
    [event] = plan.reservation_events
    assert (event.payload["status"], event.payload["restock"]) == ("RETURNED", restock)
    operation = "RETURN" if restock else "RETURN_DAMAGED"
    assert [m.operation for m in plan.movements] == [operation]
    assert [(t.from_state, t.to_state, t.published) for t in plan.transitions] == [
        ("COMMITTED", "COMMITTED", ResultStatus.RETURNED)
    ]


@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (3, 2, "p asked 2, returnable 1"),
        (4, 1, "nothing left to return"),
        (0, 5, "p asked 5, returnable 4"),
    ],
)
def test_returns_never_exceed_what_was_committed(first, second, reason):
    snap = snapshot()
    paid(snap)
    if first:
        run(snap, Return("o", (Item(P, first),), True))
    before = levels(snap, "sa")
    items = () if reason.startswith("nothing") else (Item(P, second),)
    stream = run(snap, Return("o", items, True, None, Source.STREAM, "e2"))
    [refused] = stream.results
    assert refused.published is ResultStatus.RETURN_REFUSED
    assert reason in stream.reservation_events[0].payload["reason"]
    [api] = run(snap, Return("o", items, True)).results
    assert isinstance(api, FailedPrecondition) and reason in api.message
    assert levels(snap, "sa") == before and not stream.movements


@pytest.mark.parametrize("reserved", [False, True])
def test_a_return_of_an_order_not_committed(reserved):
    snap = snapshot()
    if reserved:
        run(snap, Reserve("o", (Item(P, 2, "a"),), 60))
    stream = run(snap, Return("o", (Item(P, 1),), True, None, Source.STREAM, "e1"))
    reason = "order is RESERVED" if reserved else "unknown order"
    assert stream.reservation_events[0].payload["reason"] == reason
    [api] = run(snap, Return("o", (Item(P, 1),), True)).results
    assert isinstance(api, WrongState)
