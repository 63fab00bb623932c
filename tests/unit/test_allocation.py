import pytest

from service.domain.allocation import Slot, Take, allocate
from service.domain.errors import NotFound
from service.domain.policies import allocate_with_policies
from service.domain.snapshot import StockRow
from service.domain.values import Item, Levels, Shortage, Sku

SKU = Sku("p")
EAST = Slot("s-east", "east", 10, True, 5)
WEST = Slot("s-west", "west", 20, True, 8)
CLOSED = Slot("s-closed", "closed", 1, False, 100)


@pytest.mark.parametrize(
    ("quantity", "warehouse", "split", "expected"),
    [
        (3, None, True, [Take("s-east", "east", 3)]),
        (5, None, True, [Take("s-east", "east", 5)]),
        (7, None, True, [Take("s-east", "east", 5), Take("s-west", "west", 2)]),
        (13, None, True, [Take("s-east", "east", 5), Take("s-west", "west", 8)]),
        (14, None, True, Shortage(SKU, 14, 13)),
        (7, None, False, [Take("s-west", "west", 7)]),
        (9, None, False, Shortage(SKU, 9, 8)),
        (6, "west", True, [Take("s-west", "west", 6)]),
        (6, "east", True, Shortage(SKU, 6, 5, "east")),
        (1, "closed", True, Shortage(SKU, 1, 0, "closed")),
    ],
)
def test_allocate(quantity, warehouse, split, expected):
    item = Item(SKU, quantity, warehouse)
    assert allocate(item, [WEST, CLOSED, EAST], allow_split=split) == expected


def test_equal_priority_is_broken_by_warehouse_id():
    a = Slot("s-a", "a", 5, True, 10)
    b = Slot("s-b", "b", 5, True, 10)
    assert allocate(Item(SKU, 1), [b, a], allow_split=True) == [Take("s-a", "a", 1)]


# -- an order's items against the SKU's stock rows --

ROW_EAST = StockRow("s-east", SKU, "east", Levels(5, 0, 5), 1, priority=10)
ROW_WEST = StockRow("s-west", SKU, "west", Levels(8, 0, 8), 1, priority=20)
ROW_CLOSED = StockRow("s-closed", SKU, "closed", Levels(100, 0, 100), 1, priority=1, active=False)
WAREHOUSES = {"east", "west", "closed"}


def order(rows, items, split=True, raise_unknown=False):
    planned, shortages = allocate_with_policies(
        items, {SKU: rows}, WAREHOUSES, {}, allow_split=split, raise_unknown=raise_unknown
    )
    as_takes = [
        [Take(t.stock_id, t.warehouse_id, t.quantity) for t in takes] for _, takes in planned
    ]
    return [(item, takes) for (item, _), takes in zip(planned, as_takes, strict=True)], shortages


@pytest.mark.parametrize(
    ("rows", "quantities", "split", "expected"),
    [
        # one warehouse holds the SKU
        ([ROW_EAST], [3], True, ([[Take("s-east", "east", 3)]], [])),
        ([ROW_EAST], [6], True, ([], [Shortage(SKU, 6, 5)])),
        # later items see what earlier ones took
        ([ROW_EAST], [3, 3], True, ([[Take("s-east", "east", 3)]], [Shortage(SKU, 3, 2)])),
        (
            [ROW_EAST],
            [3, 2],
            False,
            ([[Take("s-east", "east", 3)], [Take("s-east", "east", 2)]], []),
        ),
        ([ROW_CLOSED], [1], True, ([], [Shortage(SKU, 1, 0)])),
        # several warehouses: by priority, split if allowed
        (
            [ROW_WEST, ROW_EAST],
            [4, 4],
            True,
            (
                [
                    [Take("s-east", "east", 4)],
                    [Take("s-east", "east", 1), Take("s-west", "west", 3)],
                ],
                [],
            ),
        ),
        (
            [ROW_WEST, ROW_EAST],
            [4, 4],
            False,
            ([[Take("s-east", "east", 4)], [Take("s-west", "west", 4)]], []),
        ),
        (
            [ROW_WEST, ROW_EAST],
            [10, 4],
            False,
            ([[Take("s-east", "east", 4)]], [Shortage(SKU, 10, 8)]),
        ),
    ],
)
def test_allocate_order(rows, quantities, split, expected):
    items = [Item(SKU, quantity) for quantity in quantities]
    planned, shortages = order(rows, items, split)
    assert ([takes for _, takes in planned], shortages) == expected


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("available", [-1, 0, 2, 5])
@pytest.mark.parametrize("quantity", [1, 2, 5, 6])
def test_the_single_warehouse_path_decides_as_allocate_does(split, available, quantity):
    row = StockRow("s-east", SKU, "east", Levels(available, 0, available), 1, priority=10)
    item = Item(SKU, quantity)
    planned, shortages = order([row], [item], split)
    general = allocate(item, [Slot("s-east", "east", 10, True, available)], allow_split=split)
    assert (planned[0][1] if planned else shortages[0]) == general


@pytest.mark.parametrize(
    ("item", "shortage", "error"),
    [
        (Item(Sku("zz"), 2), Shortage(Sku("zz"), 2, 0), "unknown product zz"),
        (Item(SKU, 2, "nowhere"), Shortage(SKU, 2, 0, "nowhere"), "unknown warehouse nowhere"),
    ],
)
def test_an_unknown_product_or_warehouse_is_short_or_not_found(item, shortage, error):
    assert order([ROW_EAST], [item]) == ([], [shortage])
    with pytest.raises(NotFound, match=error):
        order([ROW_EAST], [item], raise_unknown=True)


def test_an_item_pinned_to_a_warehouse_without_the_sku_is_short():
    assert order([ROW_EAST], [Item(SKU, 1, "west")]) == ([], [Shortage(SKU, 1, 0, "west")])
