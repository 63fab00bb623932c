"""UpdateStock semantics: ADD and SUBTRACT move available and total; SET counts on-hand."""

from __future__ import annotations

from service.domain.errors import NegativeStock
from service.domain.values import Levels, StockOperation


def apply_update(levels: Levels, operation: StockOperation, quantity: int) -> Levels:
    """The levels after the update; a result below zero is refused, never clamped."""
    if operation is StockOperation.ADD:
        return Levels(levels.available + quantity, levels.reserved, levels.total + quantity)
    if operation is StockOperation.SUBTRACT:
        if quantity > levels.available:
            raise NegativeStock(
                f"cannot subtract {quantity}: only {levels.available} available "
                f"({levels.reserved} reserved)"
            )
        return Levels(levels.available - quantity, levels.reserved, levels.total - quantity)
    if quantity < levels.reserved:
        raise NegativeStock(f"cannot set total to {quantity}: {levels.reserved} are reserved")
    return Levels(quantity - levels.reserved, levels.reserved, quantity)
