import pytest

from service.domain.errors import NegativeStock
from service.domain.stock_update import apply_update
from service.domain.values import Levels
from service.domain.values import StockOperation as Op

START = Levels(available=6, reserved=4, total=10)


@pytest.mark.parametrize(
    ("operation", "quantity", "expected"),
    [
        (Op.ADD, 5, Levels(11, 4, 15)),
        (Op.SUBTRACT, 6, Levels(0, 4, 4)),
        (Op.SET, 20, Levels(16, 4, 20)),
        (Op.SET, 4, Levels(0, 4, 4)),
        (Op.SUBTRACT, 7, NegativeStock),
        (Op.SET, 3, NegativeStock),
    ],
)
def test_apply_update(operation, quantity, expected):
    if expected is NegativeStock:
        with pytest.raises(NegativeStock):
            apply_update(START, operation, quantity)
    else:
        after = apply_update(START, operation, quantity)
        assert after == expected
        assert after.consistent
