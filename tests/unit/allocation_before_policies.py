"""Allocation as it was before stock policies: the reference the policy-aware allocation
(``service/domain/policies.py``) must match when every policy is the default."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence

from service.domain.allocation import Slot, Take, allocate
from service.domain.errors import NotFound
from service.domain.snapshot import StockRow
from service.domain.values import Item, Shortage, Sku


def allocate_order(
    items: Sequence[Item],
    rows_by_sku: Mapping[Sku, Sequence[StockRow]],
    warehouses: Container[str],
    *,
    allow_split: bool,
    raise_unknown: bool,
) -> tuple[list[tuple[Item, list[Take]]], list[Shortage]]:
    """Each item of an order with its takes, and the items that are short, in item order.

    Every item sees the rows less what the order's earlier items took. An item naming an
    unknown warehouse or product is short of all it requested, or with ``raise_unknown`` (an
    API caller, told what it got wrong) raises ``NotFound``.
    """
    planned: list[tuple[Item, list[Take]]] = []
    shortages: list[Shortage] = []
    held: dict[str, int] = {}  # by stock id: taken by earlier items, not applied to the rows
    for item in items:
        rows = rows_by_sku.get(item.sku, ())
        if item.warehouse_id is not None and item.warehouse_id not in warehouses:
            if raise_unknown:
                raise NotFound(f"unknown warehouse {item.warehouse_id}")
            shortages.append(Shortage(item.sku, item.quantity, 0, item.warehouse_id))
            continue
        if not rows:
            if raise_unknown:
                raise NotFound(f"unknown product {item.sku.key}")
            shortages.append(Shortage(item.sku, item.quantity, 0, item.warehouse_id))
            continue
        outcome = _allocate_from_rows(item, rows, held, allow_split=allow_split)
        if isinstance(outcome, Shortage):
            shortages.append(outcome)
        else:
            planned.append((item, outcome))
    return planned, shortages


def _allocate_from_rows(
    item: Item, rows: Sequence[StockRow], held: dict[str, int], *, allow_split: bool
) -> list[Take] | Shortage:
    if item.warehouse_id is None and len(rows) == 1 and rows[0].active:
        # The common case, one warehouse holds the SKU: nothing to choose, so no slots to build
        # (``allocate`` would decide the same).
        only = rows[0]
        free = only.levels.available - held.get(only.stock_id, 0)
        if free < item.quantity:
            return Shortage(item.sku, item.quantity, max(free, 0))
        held[only.stock_id] = held.get(only.stock_id, 0) + item.quantity
        return [Take(only.stock_id, only.warehouse_id, item.quantity)]
    slots = [
        Slot(
            row.stock_id,
            row.warehouse_id,
            row.priority,
            row.active,
            row.levels.available - held.get(row.stock_id, 0),
        )
        for row in rows
    ]
    outcome = allocate(item, slots, allow_split=allow_split)
    if not isinstance(outcome, Shortage):
        for take in outcome:
            held[take.stock_id] = held.get(take.stock_id, 0) + take.quantity
    return outcome
