"""Partial reservations: each requested line reserves what is reservable of it.

An order placed with ``allow_partial`` takes, line by line in order, as much of each line as
allocation can give it (stock first, then backorders, as ``allocate_with_policies`` decides);
a line with nothing reservable takes nothing. The planner rejects the order, as it would an
all-or-nothing one, only when no line got a unit.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import replace

from service.domain.policies import Allocation, allocate_with_policies
from service.domain.results import LineOutcome
from service.domain.snapshot import StockRow
from service.domain.values import Item, Shortage, Sku


def allocate_partially(
    items: Sequence[Item],
    rows_by_sku: Mapping[Sku, Sequence[StockRow]],
    warehouses: Container[str],
    *,
    allow_split: bool,
    raise_unknown: bool,
) -> tuple[Allocation, list[Shortage], tuple[LineOutcome, ...]]:
    """The allocation of what is reservable, the shortages of the first attempt (what each
    short line could have had), and each requested line's outcome."""
    wanted = list(items)
    allocation, first_shortages = allocate_with_policies(
        wanted, rows_by_sku, warehouses, {}, allow_split=allow_split, raise_unknown=raise_unknown
    )
    shortages = first_shortages
    # A short line asks again for what it could have had; the lines that are not short are in
    # ``allocation`` already. Lines only shrink, so this ends; a line still short after its
    # turns (a rule the figure did not foresee) reserves nothing.
    for _ in range(len(items)):
        if not shortages:
            break
        could = {id(_item_of(wanted, s)): s.available for s in shortages}
        wanted = [
            replace(item, quantity=could[id(item)]) if id(item) in could else item
            for item in wanted
            if could.get(id(item), 1) > 0
        ]
        allocation, shortages = allocate_with_policies(
            wanted, rows_by_sku, warehouses, {}, allow_split=allow_split, raise_unknown=False
        )
    reserved = {_line_key(item): sum(t.quantity for t in takes) for item, takes in allocation}
    outcomes = tuple(
        LineOutcome(item.sku, item.warehouse_id, item.quantity, reserved.get(_line_key(item), 0))
        for item in items
    )
    return allocation, first_shortages, outcomes


def _item_of(items: Sequence[Item], shortage: Shortage) -> Item:
    return next(
        item
        for item in items
        if item.sku == shortage.sku and item.warehouse_id == shortage.warehouse_id
    )


def _line_key(item: Item) -> tuple[Sku, str | None]:
    return (item.sku, item.warehouse_id)
