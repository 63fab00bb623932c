import pytest

from service.domain.allocation import Slot, Take, allocate
from service.domain.values import Item, Shortage, Sku

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
