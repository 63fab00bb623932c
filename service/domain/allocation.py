"""Allocation of an order's items to stock rows: by warehouse priority, splitting if allowed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.values import Item, Shortage


@dataclass(frozen=True, slots=True)
class Slot:
    """A stock row that an item may draw from, as seen at allocation time."""

    stock_id: str
    warehouse_id: str
    priority: int
    active: bool
    available: int


@dataclass(frozen=True, slots=True)
class Take:
    stock_id: str
    warehouse_id: str
    quantity: int


def allocate(item: Item, slots: Sequence[Slot], *, allow_split: bool) -> list[Take] | Shortage:
    """Takes for ``item``, or the shortage. ``slots`` are the SKU's rows in any order."""
    if item.warehouse_id is not None:
        candidates = [s for s in slots if s.warehouse_id == item.warehouse_id and s.active]
    else:
        candidates = sorted(
            (s for s in slots if s.active), key=lambda s: (s.priority, s.warehouse_id)
        )
    on_hand = sum(max(s.available, 0) for s in candidates)
    shortage = Shortage(item.sku, item.quantity, on_hand, item.warehouse_id)
    if not allow_split:
        whole = next((s for s in candidates if s.available >= item.quantity), None)
        if whole is None:
            best = max((s.available for s in candidates), default=0)
            return Shortage(item.sku, item.quantity, max(best, 0), item.warehouse_id)
        return [Take(whole.stock_id, whole.warehouse_id, item.quantity)]
    if on_hand < item.quantity:
        return shortage
    takes: list[Take] = []
    wanted = item.quantity
    for slot in candidates:
        quantity = min(wanted, slot.available)
        if quantity > 0:
            takes.append(Take(slot.stock_id, slot.warehouse_id, quantity))
            wanted -= quantity
        if wanted == 0:
            break
    return takes
