"""Stock policies: sellable and reservable stock, allocation with safety stock and backorders,
backorder fill, stock alerts and policy validation."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.allocation import Take
from service.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from service.domain.policies import (
    Alert,
    BackorderedLine,
    BackorderFill,
    LineFill,
    PromisedTake,
    RowSellable,
    StockAlert,
    StockPolicy,
    alerts_between,
    allocate_with_policies,
    fill_backorders,
    validate_policy,
)
from service.domain.snapshot import StockRow
from service.domain.validation import Limits
from service.domain.values import Item, Levels, Shortage, Sku
from tests.unit.allocation_before_policies import allocate_order

SKU = Sku("p")

# -- sellable, reservable, floor --


@pytest.mark.parametrize(
    ("policy", "available", "sellable", "reservable", "floor"),
    [
        pytest.param(StockPolicy(), 5, 5, 5, 0, id="defaults: all of available"),
        pytest.param(StockPolicy(), 0, 0, 0, 0, id="defaults: empty"),
        pytest.param(StockPolicy(reorder_point=9), 5, 5, 5, 0, id="a reorder point alone"),
        pytest.param(StockPolicy(safety_stock=2), 5, 3, 3, 2, id="safety stock held back"),
        pytest.param(StockPolicy(safety_stock=2), 1, -1, -1, 2, id="below the safety stock"),
        pytest.param(StockPolicy(backorder_limit=3), 2, 2, 5, -3, id="backorders on top"),
        pytest.param(StockPolicy(backorder_limit=3), -2, -2, 1, -3, id="partly backordered"),
        pytest.param(StockPolicy(2, None, 3), 4, 2, 5, -1, id="safety stock and backorders"),
        pytest.param(StockPolicy(2, None, 3), -1, -3, 0, -1, id="at the floor"),
    ],
)
def test_sellable_reservable_and_floor(policy, available, sellable, reservable, floor):
    assert policy.sellable(available) == sellable
    assert policy.reservable(available) == reservable
    assert policy.floor == floor
    # reserving q is allowed exactly when q <= reservable, i.e. available - q >= floor
    assert available - policy.reservable(available) == policy.floor


# -- allocation with policies --


def row(warehouse, available, priority, active=True, sku=SKU):
    backordered = max(-available, 0)
    levels = Levels(available, backordered, available + backordered)
    return StockRow(f"s-{warehouse}", sku, warehouse, levels, 1, priority, active)


def take(warehouse, quantity, backordered=0):
    return PromisedTake(f"s-{warehouse}", warehouse, quantity, backordered)


WAREHOUSES = {"east", "west", "south"}


def east(available):
    return row("east", available, 10)


def west(available):
    return row("west", available, 20)


SAFE_EAST = {"s-east": StockPolicy(safety_stock=2)}
BACKORDER_WEST = {"s-west": StockPolicy(backorder_limit=5)}


@pytest.mark.parametrize(
    ("rows", "policies", "items", "split", "planned", "shortages"),
    [
        pytest.param(
            [east(5), west(8)], {}, [7], True, [[take("east", 5), take("west", 2)]], [],
            id="defaults: today's answer",
        ),
        pytest.param(
            [east(5), west(8)], SAFE_EAST, [4], True, [[take("east", 3), take("west", 1)]], [],
            id="safety stock in the first warehouse, split",
        ),
        pytest.param(
            [east(5), west(8)], SAFE_EAST, [4], False, [[take("west", 4)]], [],
            id="safety stock in the first warehouse, no split: whole from the second",
        ),
        pytest.param(
            [east(5), west(8)],
            {**SAFE_EAST, "s-west": StockPolicy(safety_stock=8)},
            [4], True, [], [Shortage(SKU, 4, 3)],
            id="safety stock is never promised",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [10], True,
            [[take("east", 5), take("west", 5, 3)]], [],
            id="backorders only in the second, split: all stock first",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [13], True, [], [Shortage(SKU, 13, 12)],
            id="backorders only in the second, beyond its room",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [6], False, [[take("west", 6, 4)]], [],
            id="backorders only in the second, no split",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [8], False, [], [Shortage(SKU, 8, 7)],
            id="no split, beyond every single warehouse",
        ),
        pytest.param(
            [east(2), west(6)], {"s-east": StockPolicy(backorder_limit=5)}, [5], False,
            [[take("west", 5)]], [],
            id="no split: a warehouse with the stock before backorders",
        ),
        pytest.param(
            [east(2), west(4)], {"s-east": StockPolicy(backorder_limit=3)}, [9], True,
            [[take("east", 5, 3), take("west", 4)]], [],
            id="split over both: the backorders join the first's stock",
        ),
        pytest.param(
            [east(0), west(0)],
            {"s-east": StockPolicy(backorder_limit=1), "s-west": StockPolicy(backorder_limit=9)},
            [3], True, [], [Shortage(SKU, 3, 1)],
            id="backorders from the first warehouse that allows them, never spread",
        ),
        pytest.param(
            [east(-1), west(0)],
            {"s-east": StockPolicy(backorder_limit=1), "s-west": StockPolicy(backorder_limit=9)},
            [3], True, [[take("west", 3, 3)]], [],
            id="a first warehouse without room left is passed over",
        ),
        pytest.param(
            [east(1), row("south", 0, 1, active=False)],
            {"s-south": StockPolicy(backorder_limit=99)}, [2], True, [], [Shortage(SKU, 2, 1)],
            id="an inactive warehouse takes no backorders",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [Item(SKU, 4, "west")], True,
            [[take("west", 4, 2)]], [],
            id="pinned to a warehouse with backorders",
        ),
        pytest.param(
            [east(5), west(2)], BACKORDER_WEST, [Item(SKU, 8, "west")], False, [],
            [Shortage(SKU, 8, 7, "west")],
            id="pinned, beyond its room",
        ),
        pytest.param(
            [east(2)], {"s-east": StockPolicy(backorder_limit=3)}, [4, 2], True,
            [[take("east", 4, 2)]], [Shortage(SKU, 2, 1)],
            id="one warehouse: later items see earlier backorders",
        ),
        pytest.param(
            [east(3)], {"s-east": StockPolicy(2, None, 4)}, [5], True,
            [[take("east", 5, 4)]], [],
            id="one warehouse: safety stock and backorders, down to the floor",
        ),
        pytest.param(
            [east(3)], {"s-east": StockPolicy(2, None, 4)}, [6], True, [],
            [Shortage(SKU, 6, 5)],
            id="one warehouse: not below the floor",
        ),
        pytest.param(
            [east(1)], {"s-east": StockPolicy(2, None, 5)}, [4], False,
            [[take("east", 4, 4)]], [],
            id="one warehouse below its safety stock: every unit is backordered",
        ),
    ],
)  # fmt: skip
def test_allocate_with_policies(rows, policies, items, split, planned, shortages):
    items = [i if isinstance(i, Item) else Item(SKU, i) for i in items]
    got, short = allocate_with_policies(
        items, {SKU: rows}, WAREHOUSES, policies, allow_split=split, raise_unknown=False
    )
    assert ([takes for _, takes in got], short) == (planned, shortages)


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
@pytest.mark.parametrize("quantity", [1, 4, 8], ids=lambda q: f"q{q}")
@pytest.mark.parametrize("available", [-3, 0, 2, 5], ids=lambda a: f"a{a}")
@pytest.mark.parametrize(
    "policy",
    [
        StockPolicy(),
        StockPolicy(safety_stock=2),
        StockPolicy(backorder_limit=3),
        StockPolicy(2, 1, 3),
    ],
    ids=["defaults", "safety", "backorders", "both"],
)
def test_the_single_warehouse_path_decides_as_the_general_one(policy, available, quantity, split):
    only = east(available)
    closed = row("south", 50, 1, active=False)  # a second row: the general path
    policies = {"s-east": policy, "s-south": StockPolicy(backorder_limit=9)}
    item = [Item(SKU, quantity)]

    def allocated(rows):
        return allocate_with_policies(
            item, {SKU: rows}, WAREHOUSES, policies, allow_split=split, raise_unknown=False
        )

    assert allocated([only]) == allocated([only, closed])


# -- properties over random stock --

STOCK_WAREHOUSES = ("a", "b", "c")
SKUS = (Sku("p"), Sku("q", "red"))


@st.composite
def stock(draw, unknown=True):
    """Rows of two SKUs in up to three warehouses, and an order's items; ``unknown`` adds items
    of an unknown product or warehouse."""
    rows_by_sku = {}
    for sku in SKUS:
        rows_by_sku[sku] = []
        for w in draw(st.lists(st.sampled_from(STOCK_WAREHOUSES), unique=True, max_size=3)):
            available = draw(st.integers(-2, 8))
            priority, active = draw(st.integers(0, 3)), draw(st.sampled_from((True, True, False)))
            levels = Levels(available, 0, available)
            rows_by_sku[sku].append(StockRow(f"{sku.key}@{w}", sku, w, levels, 1, priority, active))
    items = draw(
        st.lists(
            st.builds(
                Item,
                st.sampled_from((*SKUS, Sku("unknown")) if unknown else SKUS),
                st.integers(1, 8),
                st.sampled_from((None, None, *STOCK_WAREHOUSES, *(["nowhere"] if unknown else []))),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return rows_by_sku, items


def policies_of(draw, rows_by_sku, policy):
    return {r.stock_id: draw(policy) for rows in rows_by_sku.values() for r in rows}


def outcome(function, *args, **kwargs):
    """The answer, or the message of the ``NotFound`` raised instead."""
    try:
        return function(*args, **kwargs)
    except NotFound as error:
        return str(error)


@settings(max_examples=300, deadline=None)
@given(stock(), st.booleans(), st.booleans(), st.data())
def test_default_policies_allocate_as_today(scenario, split, raise_unknown, data):
    rows_by_sku, items = scenario
    # a reorder point changes no allocation: those policies count as defaults here
    reorder_only = st.builds(StockPolicy, reorder_point=st.none() | st.integers(0, 5))
    policies = policies_of(data.draw, rows_by_sku, reorder_only)
    args = (items, rows_by_sku, set(STOCK_WAREHOUSES))
    flags = {"allow_split": split, "raise_unknown": raise_unknown}
    today = outcome(allocate_order, *args, **flags)
    with_policies = outcome(allocate_with_policies, *args, policies, **flags)
    if isinstance(today, str):
        assert with_policies == today
        return
    planned, shortages = with_policies
    assert all(t.backordered == 0 for _, takes in planned for t in takes)
    as_takes = [
        (item, [Take(t.stock_id, t.warehouse_id, t.quantity) for t in takes])
        for item, takes in planned
    ]
    assert (as_takes, shortages) == today


@settings(max_examples=300, deadline=None)
@given(stock(unknown=False), st.booleans(), st.data())
def test_allocation_keeps_to_the_policies(scenario, split, data):
    rows_by_sku, items = scenario
    any_policy = st.builds(
        StockPolicy, st.integers(0, 3), st.none() | st.integers(0, 5), st.integers(0, 6)
    )
    policies = policies_of(data.draw, rows_by_sku, any_policy)
    planned, shortages = allocate_with_policies(
        items, rows_by_sku, set(STOCK_WAREHOUSES), policies, allow_split=split, raise_unknown=False
    )
    rows = {r.stock_id: r for rs in rows_by_sku.values() for r in rs}
    policy = {stock_id: policies.get(stock_id, StockPolicy()) for stock_id in rows}
    taken = dict.fromkeys(rows, 0)
    assert len(planned) + len(shortages) == len(items)
    for item, takes in planned:
        eligible = [
            r
            for r in rows_by_sku[item.sku]
            if r.active and item.warehouse_id in (None, r.warehouse_id)
        ]

        def sellable(r):
            return policy[r.stock_id].sellable(r.levels.available - taken[r.stock_id])

        backordered = [t for t in takes if t.backordered]
        assert sum(t.quantity for t in takes) == item.quantity
        assert {t.stock_id for t in takes} <= {r.stock_id for r in eligible}
        assert len(backordered) <= 1, "backorders come from one warehouse"
        assert split or len(takes) == 1
        for t in takes:
            # the units beyond the row's sellable stock, exactly
            assert t.backordered == max(t.quantity - max(sellable(rows[t.stock_id]), 0), 0)
        if backordered and not split:
            assert all(sellable(r) < item.quantity for r in eligible), "stock before backorders"
        for t in takes:
            taken[t.stock_id] += t.quantity
        if backordered and split:
            assert all(sellable(r) <= 0 for r in eligible), "all stock before backorders"
    for stock_id, units in taken.items():
        if units:
            assert rows[stock_id].levels.available - units >= policy[stock_id].floor


# -- backorder fill --

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def line(reservation_id, order_id, stock_id, backordered, second=0):
    return BackorderedLine(
        reservation_id, order_id, stock_id, backordered, T0 + timedelta(seconds=second)
    )


TWO_ORDERS = [line("r2", "o2", "e", 2, 2), line("r1", "o1", "e", 3, 1)]  # given newest first
ONE_ORDER_TWO_ROWS = [line("r1", "o1", "e", 2, 1), line("r2", "o1", "w", 1, 2)]


@pytest.mark.parametrize(
    ("sellable", "lines", "fills", "orders_filled"),
    [
        pytest.param(
            {"e": -2}, TWO_ORDERS, [LineFill("r1", "o1", "e", 3, 0)], ["o1"],
            id="oldest first",
        ),
        pytest.param(
            {"e": -4}, TWO_ORDERS, [LineFill("r1", "o1", "e", 1, 2)], [],
            id="a partial fill fills no order",
        ),
        pytest.param(
            {"e": -3}, TWO_ORDERS, [LineFill("r1", "o1", "e", 2, 1)], [],
            id="the newest units stay uncovered",
        ),
        pytest.param(
            {"e": 0}, TWO_ORDERS,
            [LineFill("r1", "o1", "e", 3, 0), LineFill("r2", "o2", "e", 2, 0)], ["o1", "o2"],
            id="sellable back at zero covers every line",
        ),
        pytest.param(
            {"e": 7}, TWO_ORDERS,
            [LineFill("r1", "o1", "e", 3, 0), LineFill("r2", "o2", "e", 2, 0)], ["o1", "o2"],
            id="above zero: never more than was backordered",
        ),
        pytest.param({"e": -5}, TWO_ORDERS, [], [], id="no gain over the backorders: no fill"),
        pytest.param({"e": -9}, TWO_ORDERS, [], [], id="a row below its safety stock fills none"),
        pytest.param({"x": 5}, TWO_ORDERS, [], [], id="only the rows that gained are filled"),
        pytest.param(
            {"e": 0}, ONE_ORDER_TWO_ROWS, [LineFill("r1", "o1", "e", 2, 0)], [],
            id="an order still backordered on another row is not filled",
        ),
        pytest.param(
            {"e": 0, "w": 0}, ONE_ORDER_TWO_ROWS,
            [LineFill("r1", "o1", "e", 2, 0), LineFill("r2", "o1", "w", 1, 0)], ["o1"],
            id="an order filled on two rows at once: one BACKORDER_FILLED",
        ),
        pytest.param(
            {"e": 0}, [line("r1", "o1", "e", 2, 1), line("r2", "o1", "e", 1, 2)],
            [LineFill("r1", "o1", "e", 2, 0), LineFill("r2", "o1", "e", 1, 0)], ["o1"],
            id="two lines of an order on one row: one BACKORDER_FILLED",
        ),
        pytest.param(
            {"e": -2}, [line("r1", "o1", "e", 2, 1), line("r2", "o2", "e", 2, 1)],
            [LineFill("r1", "o1", "e", 2, 0)], ["o1"],
            id="created together: in the order given",
        ),
        pytest.param(
            {"e": 5}, [line("r1", "o1", "e", 0, 1)], [], [],
            id="an order with nothing backordered is never filled",
        ),
    ],
)  # fmt: skip
def test_fill_backorders(sellable, lines, fills, orders_filled):
    assert fill_backorders(sellable, lines) == BackorderFill(tuple(fills), tuple(orders_filled))


def test_an_order_filled_over_two_fills_is_reported_once():
    first = fill_backorders({"e": 0}, ONE_ORDER_TWO_ROWS)
    assert first.orders_filled == ()
    left = [line("r2", "o1", "w", 1, 2)]  # the engine records r1's fill: r1 owes nothing
    assert fill_backorders({"w": 0}, left).orders_filled == ("o1",)
    assert fill_backorders({"w": 3}, []).orders_filled == ()


# -- alerts --


def at(stock_id, sellable, reorder_point=None, active=True):
    return RowSellable(f"s-{stock_id}", SKU, stock_id, sellable, active, reorder_point)


def alert(kind, warehouse_id, sellable):
    return Alert(StockAlert(kind), SKU, warehouse_id, sellable)


KEEP = at("keep", 10)  # holds the SKU in stock: only the rows' own alerts


@pytest.mark.parametrize(
    ("before", "after", "alerts"),
    [
        pytest.param(at("e", 5, 2), at("e", 2, 2), [alert("LOW_STOCK", "e", 2)],
                     id="low: down to the reorder point"),
        pytest.param(at("e", 5, 2), at("e", 1, 2), [alert("LOW_STOCK", "e", 1)],
                     id="low: below the reorder point"),
        pytest.param(at("e", 5, 2), at("e", 3, 2), [], id="no crossing: 5 -> 3 over 2"),
        pytest.param(at("e", 2, 2), at("e", 1, 2), [], id="no crossing: already low"),
        pytest.param(at("e", 1, 2), at("e", 5, 2), [], id="no crossing: rising out of low"),
        pytest.param(at("e", 5), at("e", 1), [], id="no reorder point: never low"),
        pytest.param(at("e", 3), at("e", 3, 5), [alert("LOW_STOCK", "e", 3)],
                     id="low: a reorder point set over the level"),
        pytest.param(at("e", 3), at("e", 0), [alert("OUT_OF_STOCK", "e", 0)],
                     id="out of stock: 3 -> 0"),
        pytest.param(at("e", 3, 1), at("e", 0, 1),
                     [alert("LOW_STOCK", "e", 0), alert("OUT_OF_STOCK", "e", 0)],
                     id="low and out of stock in one step"),
        pytest.param(at("e", 2), at("e", -3), [alert("OUT_OF_STOCK", "e", -3)],
                     id="out of stock into backorders"),
        pytest.param(at("e", -1), at("e", -3), [], id="no crossing: -1 -> -3"),
        pytest.param(at("e", 0), at("e", -2), [], id="no crossing: 0 -> -2"),
        pytest.param(at("e", 0), at("e", 1), [alert("BACK_IN_STOCK", "e", 1)],
                     id="back in stock: 0 -> 1"),
        pytest.param(at("e", -3), at("e", 2), [alert("BACK_IN_STOCK", "e", 2)],
                     id="back in stock from backorders"),
        pytest.param(at("e", 5), at("e", 3), [], id="no crossing: 5 -> 3"),
    ],
)  # fmt: skip
def test_row_alerts(before, after, alerts):
    assert alerts_between([before, KEEP], [after, KEEP]) == alerts


@pytest.mark.parametrize(
    ("before", "after", "alerts"),
    [
        pytest.param(
            [at("e", 2), at("w", 0)], [at("e", 0), at("w", 0)],
            [alert("OUT_OF_STOCK", "e", 0), alert("OUT_OF_STOCK", None, 0)],
            id="the SKU out of stock with its last row",
        ),
        pytest.param(
            [at("e", 0), at("w", 0)], [at("e", 4), at("w", 0)],
            [alert("BACK_IN_STOCK", "e", 4), alert("BACK_IN_STOCK", None, 4)],
            id="the SKU back in stock",
        ),
        pytest.param(
            [at("e", 3), at("w", 0)], [at("e", 1), at("w", 0)], [],
            id="no crossing: the SKU 3 -> 1",
        ),
        pytest.param(
            [at("e", 1), at("x", 50, active=False)], [at("e", 0), at("x", 50, active=False)],
            [alert("OUT_OF_STOCK", "e", 0), alert("OUT_OF_STOCK", None, 0)],
            id="an inactive warehouse's stock does not count",
        ),
        pytest.param(
            [at("e", 5), at("w", 0)], [at("e", 5, active=False), at("w", 0)],
            [alert("OUT_OF_STOCK", None, 0)],
            id="a warehouse deactivated",
        ),
        pytest.param(
            [at("e", 5, active=False)], [at("e", 5)], [alert("BACK_IN_STOCK", None, 5)],
            id="a warehouse activated",
        ),
        pytest.param(
            [at("e", 0), at("w", 2)], [at("e", -3), at("w", 2)], [],
            id="backorders in one warehouse do not hide another's stock",
        ),
        pytest.param(
            [at("e", -3), at("w", 0)], [at("e", -3), at("w", 1)],
            [alert("BACK_IN_STOCK", "w", 1), alert("BACK_IN_STOCK", None, 1)],
            id="back in stock while another warehouse is backordered",
        ),
        pytest.param(
            [], [at("e", 4)], [alert("BACK_IN_STOCK", "e", 4), alert("BACK_IN_STOCK", None, 4)],
            id="a new row: empty before",
        ),
        pytest.param(
            [at("e", 4)], [], [alert("OUT_OF_STOCK", "e", 0), alert("OUT_OF_STOCK", None, 0)],
            id="a row gone: empty after",
        ),
    ],
)  # fmt: skip
def test_sku_alerts(before, after, alerts):
    assert alerts_between(before, after) == alerts


def test_row_sellable_of_a_stock_row():
    stock_row = row("east", 5, 10, active=False)
    assert RowSellable.of(stock_row, StockPolicy(2, 4, 0)) == RowSellable(
        "s-east", SKU, "east", 3, False, 4
    )


# -- validation --

LIMITS = Limits(max_quantity_per_item=100)


@pytest.mark.parametrize(
    ("given", "available", "policy"),
    [
        pytest.param({}, 0, StockPolicy(), id="defaults"),
        pytest.param(
            {"safety_stock": 2, "reorder_point": 5, "backorder_limit": 10}, 0,
            StockPolicy(2, 5, 10), id="every field",
        ),
        pytest.param({"reorder_point": 0}, 0, StockPolicy(reorder_point=0), id="reorder at 0"),
        pytest.param({"safety_stock": 100}, 0, StockPolicy(safety_stock=100), id="safety at limit"),
        pytest.param({"backorder_limit": 3}, -3, StockPolicy(backorder_limit=3),
                     id="a limit equal to what is backordered"),
        pytest.param({"safety_stock": 9}, 1, None, id="a floor above available is allowed"),
    ],
)  # fmt: skip
def test_valid_policies(given, available, policy):
    got = validate_policy(**given, available=available, limits=LIMITS)
    assert got == (policy or StockPolicy(**given))


@pytest.mark.parametrize(
    ("given", "available", "error", "field"),
    [
        pytest.param({"safety_stock": -1}, 0, InvalidArgument, "safety_stock",
                     id="negative safety stock"),
        pytest.param({"reorder_point": -1}, 0, InvalidArgument, "reorder_point",
                     id="negative reorder point"),
        pytest.param({"backorder_limit": -1}, 0, InvalidArgument, "backorder_limit",
                     id="negative backorder limit"),
        pytest.param({"safety_stock": 101}, 0, InvalidArgument, "safety_stock",
                     id="safety over the quantity limit"),
        pytest.param({"safety_stock": True}, 0, InvalidArgument, "safety_stock", id="a bool"),
        pytest.param({"backorder_limit": 1.5}, 0, InvalidArgument, "backorder_limit",
                     id="a float"),
        pytest.param({"reorder_point": "3"}, 0, InvalidArgument, "reorder_point", id="a string"),
        pytest.param({"backorder_limit": 2}, -3, FailedPrecondition, "backorder_limit",
                     id="a limit below what is backordered"),
        pytest.param({}, -1, FailedPrecondition, "backorder_limit",
                     id="no backorders on a backordered row"),
        pytest.param({"backorder_limit": -1}, -3, InvalidArgument, "backorder_limit",
                     id="the input is checked before the row"),
    ],
)  # fmt: skip
def test_invalid_policies(given, available, error, field):
    with pytest.raises(error) as raised:
        validate_policy(**given, available=available, limits=LIMITS)
    assert type(raised.value) is error
    assert raised.value.message.startswith(f"{field}:")
    if isinstance(raised.value, InvalidArgument):
        assert raised.value.field == field
