"""Stock policies of a stock row (SKU x warehouse): safety stock, reorder point, backorders.

``sellable`` (what reads report) keeps the safety stock back; ``reservable`` (what reservations
draw on) adds the backorder allowance. At the defaults both are ``available``, and allocation
answers as before policies. ``StockPolicy`` (one row's policy), ``allocate_with_policies``
(``allocate_order`` with policies), ``fill_backorders`` (new stock covers backordered lines),
``alerts_between`` (LOW_STOCK, OUT_OF_STOCK, BACK_IN_STOCK on crossings), ``validate_policy``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from operator import attrgetter
from typing import Any

from service.domain.allocation import Slot, Take, allocate
from service.domain.errors import FailedPrecondition, NotFound
from service.domain.snapshot import StockRow
from service.domain.validation import Limits, require_int
from service.domain.values import Item, Shortage, Sku, StockPolicy

# --- allocation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromisedTake(Take):
    """A take, and how many of its units are promised beyond the row's sellable stock. It is a
    ``Take``, so code that reserves takes reserves these as they are."""

    backordered: int = 0


Allocation = list[tuple[Item, list[PromisedTake]]]


def allocate_with_policies(
    items: Sequence[Item],
    rows_by_sku: Mapping[Sku, Sequence[StockRow]],
    warehouses: Container[str],
    policies: Mapping[str, StockPolicy],
    *,
    allow_split: bool,
    raise_unknown: bool,
) -> tuple[Allocation, list[Shortage]]:
    """``allocate_order`` with each row's policy (``policies`` by stock id overrides a row's own).

    An item takes sellable stock first, from the eligible rows by priority as ``allocate``
    chooses them (split or whole); only when that is not enough does it take backorders, all
    from the first eligible warehouse by priority that allows them and has room left. Without
    split the item comes whole from one row: the first with enough sellable stock, else that
    backorder warehouse. With every policy at its default the answers are ``allocate_order``'s.
    A shortage reports what the item could have had, backorder room included.
    """
    planned: Allocation = []
    shortages: list[Shortage] = []
    held: dict[str, int] = {}  # by stock id: taken by earlier items, not applied to the rows
    for item in items:
        # Unknown warehouse or product: short of everything, or NotFound for an API caller.
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
        outcome = _allocate_item(item, rows, held, policies, allow_split)
        if isinstance(outcome, Shortage):
            shortages.append(outcome)
            continue
        for take in outcome:
            held[take.stock_id] = held.get(take.stock_id, 0) + take.quantity
        planned.append((item, outcome))
    return planned, shortages


def _stock_and_room(
    row: StockRow, held: Mapping[str, int], policies: Mapping[str, StockPolicy]
) -> tuple[int, int]:
    """What the row can still promise from stock, and beyond it as backorders."""
    policy = policies.get(row.stock_id, row.policy)
    free = row.levels.available - held.get(row.stock_id, 0)
    stock = max(policy.sellable(free), 0)
    # Room left under the floor: the whole limit while sellable is not below zero, less what
    # is already backordered (sellable below zero) otherwise.
    return stock, max(policy.reservable(free), 0) - stock


def _allocate_item(
    item: Item,
    rows: Sequence[StockRow],
    held: Mapping[str, int],
    policies: Mapping[str, StockPolicy],
    allow_split: bool,
) -> list[PromisedTake] | Shortage:
    quantity = item.quantity
    if item.warehouse_id is None and len(rows) == 1 and rows[0].active:
        # The common case, one warehouse holds the SKU: nothing to choose, so no slots to build
        # (the general path below decides the same; a test holds them equal).
        only = rows[0]
        stock, room = _stock_and_room(only, held, policies)
        if stock + room < quantity:
            return Shortage(item.sku, quantity, stock + room)
        backordered = max(quantity - stock, 0)
        return [PromisedTake(only.stock_id, only.warehouse_id, quantity, backordered)]
    stock_of: dict[str, int] = {}
    room_of: dict[str, int] = {}
    for row in rows:
        stock_of[row.stock_id], room_of[row.stock_id] = _stock_and_room(row, held, policies)
    # ``allocate`` over slots that hold sellable stock decides which rows are eligible and in
    # what order, exactly as it does today over available stock.
    stock_slots = [_slot(row, stock_of[row.stock_id]) for row in rows]
    from_stock = allocate(item, stock_slots, allow_split=allow_split)
    if not isinstance(from_stock, Shortage):
        return [PromisedTake(t.stock_id, t.warehouse_id, t.quantity) for t in from_stock]
    # Short of sellable stock. The backorder warehouse is the row ``allocate``, by the same
    # rule, would take one unit from among the rows' backorder room: the first by priority
    # that allows backorders and has room left.
    room_slots = [_slot(row, room_of[row.stock_id]) for row in rows]
    first = allocate(replace(item, quantity=1), room_slots, allow_split=False)
    if isinstance(first, Shortage):
        return from_stock
    target, warehouse_id = first[0].stock_id, first[0].warehouse_id
    room = room_of[target]
    if not allow_split:
        stock = stock_of[target]  # none of the rows had the whole item in stock
        if stock + room < quantity:
            best = max(from_stock.available, stock + room)
            return Shortage(item.sku, quantity, best, item.warehouse_id)
        return [PromisedTake(target, warehouse_id, quantity, quantity - stock)]
    stock = from_stock.available  # with split: all the sellable stock of the eligible rows
    if stock + room < quantity:
        return Shortage(item.sku, quantity, stock + room, item.warehouse_id)
    takes = _all_of(replace(item, quantity=stock), stock_slots) if stock else []
    backordered = quantity - stock
    for index, take in enumerate(takes):
        if take.stock_id == target:  # one take per row: the backorders join its stock
            takes[index] = replace(
                take, quantity=take.quantity + backordered, backordered=backordered
            )
            return takes
    return [*takes, PromisedTake(target, warehouse_id, backordered, backordered)]


def _slot(row: StockRow, units: int) -> Slot:
    return Slot(row.stock_id, row.warehouse_id, row.priority, row.active, units)


def _all_of(item: Item, slots: Sequence[Slot]) -> list[PromisedTake]:
    """Every unit of ``slots`` the item's rows hold, by priority (``item.quantity`` is that sum)."""
    takes = allocate(item, slots, allow_split=True)
    if isinstance(takes, Shortage):
        raise AssertionError(f"{item} is all the stock there is, yet short: {takes}")  # a bug
    return [PromisedTake(t.stock_id, t.warehouse_id, t.quantity) for t in takes]


# --- backorder fill --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackorderedLine:
    """A reservation with units still promised beyond its row's sellable stock."""

    reservation_id: str
    order_id: str
    stock_id: str
    backordered: int  # units not yet covered
    created_at: datetime  # the fill order: oldest first, ties in the order given


@dataclass(frozen=True, slots=True)
class LineFill:
    reservation_id: str
    order_id: str
    stock_id: str
    filled: int
    still_backordered: int


@dataclass(frozen=True, slots=True)
class BackorderFill:
    lines: tuple[LineFill, ...] = ()
    # orders with no backordered unit left after this fill, each once: one BACKORDER_FILLED
    orders_filled: tuple[str, ...] = ()


def fill_backorders(
    sellable: Mapping[str, int], open_lines: Iterable[BackorderedLine]
) -> BackorderFill:
    """Fill the backordered lines of the rows that gained stock, oldest first.

    ``sellable``: by stock id, each gaining row's sellable after the gain (rows in the order to
    fill them). ``open_lines``: the backordered lines of those rows, and every other
    backordered line of their orders, which is not filled here but keeps its order from
    counting as filled. A row's lines leave uncovered as many units as its sellable is below
    zero (the newest ones); its other backordered units are filled. A reservation leaves its
    row's backordered units equal to that deficit at most, so a row that gained nothing fills
    nothing. Stock returned by a release or an expiry is a gain too.
    """
    # a stable sort: lines created at one time (one batch) keep the order they were given in
    waiting = (line for line in open_lines if line.backordered > 0)
    lines = sorted(waiting, key=attrgetter("created_at"))
    owed: dict[str, int] = {}  # by order: backordered units over all its lines
    by_row: dict[str, list[BackorderedLine]] = {}
    for line in lines:
        owed[line.order_id] = owed.get(line.order_id, 0) + line.backordered
        by_row.setdefault(line.stock_id, []).append(line)
    fills: list[LineFill] = []
    orders_filled: list[str] = []
    for stock_id, now_sellable in sellable.items():
        row_lines = by_row.get(stock_id, [])
        outstanding = sum(line.backordered for line in row_lines)
        units = outstanding - min(outstanding, max(-now_sellable, 0))
        for line in row_lines:
            if units == 0:
                break
            filled = min(units, line.backordered)
            units -= filled
            left = line.backordered - filled
            fills.append(LineFill(line.reservation_id, line.order_id, stock_id, filled, left))
            owed[line.order_id] -= filled
            if owed[line.order_id] == 0:
                orders_filled.append(line.order_id)
    return BackorderFill(tuple(fills), tuple(orders_filled))


# --- alerts ----------------------------------------------------------------------------------


class StockAlert(StrEnum):
    LOW_STOCK = "LOW_STOCK"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    BACK_IN_STOCK = "BACK_IN_STOCK"


@dataclass(frozen=True, slots=True)
class RowSellable:
    """A stock row as the alerts judge it."""

    stock_id: str
    sku: Sku
    warehouse_id: str
    sellable: int
    active: bool = True
    reorder_point: int | None = None

    @classmethod
    def of(cls, row: StockRow, policy: StockPolicy) -> RowSellable:
        return cls(
            row.stock_id,
            row.sku,
            row.warehouse_id,
            policy.sellable(row.levels.available),
            row.active,
            policy.reorder_point,
        )

    @property
    def low(self) -> bool:
        return self.reorder_point is not None and self.sellable <= self.reorder_point


@dataclass(frozen=True, slots=True)
class Alert:
    kind: StockAlert
    sku: Sku
    warehouse_id: str | None  # None: the SKU over its active warehouses
    sellable: int  # after the change


def alerts_between(before: Iterable[RowSellable], after: Iterable[RowSellable]) -> list[Alert]:
    """The alerts of the change from ``before`` to ``after``: one per crossing, none while a
    level moves on one side of its threshold (5 -> 3 over a reorder point of 2; -1 -> -3).

    Per row: LOW_STOCK when it becomes low (sellable at or below the reorder point; a reorder
    point set or raised over the level counts), then OUT_OF_STOCK / BACK_IN_STOCK when its
    sellable crosses to <= 0 / > 0. Per SKU, after its rows: the same two over the sellable
    stock of its active rows, each counted from zero: one warehouse's backorders do not hide
    another's stock, as ``allocate`` counts on-hand. Pass every row of each SKU that changed,
    on both sides; a row on one side only is an empty row (sellable 0, inactive) on the other.
    """
    was = {row.stock_id: row for row in before}
    now = {row.stock_id: row for row in after}
    alerts: list[Alert] = []
    for stock_id in [*now, *(s for s in was if s not in now)]:
        new = now.get(stock_id) or _empty(was[stock_id])
        old = was.get(stock_id) or _empty(new)
        if new.low and not old.low:
            alerts.append(Alert(StockAlert.LOW_STOCK, new.sku, new.warehouse_id, new.sellable))
        kind = _crossing(old.sellable, new.sellable)
        if kind is not None:
            alerts.append(Alert(kind, new.sku, new.warehouse_id, new.sellable))
    sku_before, sku_after = _sku_stock(was.values()), _sku_stock(now.values())
    for sku in dict.fromkeys([*sku_after, *sku_before]):
        level = sku_after.get(sku, 0)
        kind = _crossing(sku_before.get(sku, 0), level)
        if kind is not None:
            alerts.append(Alert(kind, sku, None, level))
    return alerts


def _empty(row: RowSellable) -> RowSellable:
    return replace(row, sellable=0, active=False, reorder_point=None)


def _crossing(before: int, after: int) -> StockAlert | None:
    if before > 0 >= after:
        return StockAlert.OUT_OF_STOCK
    if before <= 0 < after:
        return StockAlert.BACK_IN_STOCK
    return None


def _sku_stock(rows: Iterable[RowSellable]) -> dict[Sku, int]:
    stock: dict[Sku, int] = {}
    for row in rows:
        stock[row.sku] = stock.get(row.sku, 0) + (max(row.sellable, 0) if row.active else 0)
    return stock


# --- validation ------------------------------------------------------------------------------

# As for UpdateStock's quantities: the largest integer a JSON number carries exactly.
_MAX_COUNT = 2**53


def validate_policy(
    *,
    safety_stock: Any = 0,
    reorder_point: Any = None,
    backorder_limit: Any = 0,
    available: int,
    limits: Limits,
) -> StockPolicy:
    """The policy, from raw input, for a row at ``available`` (0 for a new row).

    ``InvalidArgument`` naming the field for a non-integer or a negative value, or a safety
    stock over ``limits.max_quantity_per_item``; ``reorder_point`` None means no alert.
    ``FailedPrecondition`` (its message starting ``backorder_limit:``) for a backorder limit
    below the units already backordered on the row: the row would be over its own limit. A
    floor above ``available`` is allowed: it only stops new reservations.
    """
    safety = require_int(safety_stock, "safety_stock", low=0, high=limits.max_quantity_per_item)
    reorder = (
        None
        if reorder_point is None
        else require_int(reorder_point, "reorder_point", low=0, high=_MAX_COUNT)
    )
    limit = require_int(backorder_limit, "backorder_limit", low=0, high=_MAX_COUNT)
    if available < -limit:
        raise FailedPrecondition(
            f"backorder_limit: {-available} units are backordered on the row, over {limit}"
        )
    return StockPolicy(safety, reorder, limit)
