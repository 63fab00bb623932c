"""The snapshot the engine loads for a batch: every row the batch may touch, locked.

Rows are plain (not frozen) slotted dataclasses: a batch makes thousands of them, and a frozen
dataclass's ``__init__`` costs about twice as much. Only a ``StockRow`` is ever changed in
place; a reservation that changes status is a new row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.domain.results import ReservationLine, StockLevel
from service.domain.values import (
    DEFAULT_POLICY,
    Item,
    Levels,
    OrderState,
    ReservationStatus,
    Sku,
    StockPolicy,
)


@dataclass(slots=True)
class StockRow:
    stock_id: str
    sku: Sku
    warehouse_id: str
    levels: Levels
    version: int
    priority: int = 100
    active: bool = True
    policy: StockPolicy = DEFAULT_POLICY
    backordered: int = 0  # the sum of its open reservation lines' ``backordered``

    def level(self) -> StockLevel:
        policy = self.policy
        return StockLevel(
            self.stock_id,
            self.sku,
            self.warehouse_id,
            self.levels.available,
            self.levels.reserved,
            self.levels.total,
            self.version,
            policy.safety_stock,
            policy.reorder_point,
            policy.backorder_limit,
            self.backordered,
        )


@dataclass(frozen=True, slots=True)
class Warehouse:
    warehouse_id: str
    priority: int
    active: bool


@dataclass(slots=True)
class ReservationRow:
    reservation_id: str
    order_id: str
    stock_id: str
    sku: Sku
    warehouse_id: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime
    backordered: int = 0
    created_at: datetime | None = None  # the backorder fill order: oldest first
    returned: int = 0  # of a COMMITTED line's ``quantity``, units that came back (returns)

    def line(self) -> ReservationLine:
        return ReservationLine(
            self.reservation_id,
            self.sku,
            self.warehouse_id,
            self.quantity,
            self.status,
            self.backordered,
        )


@dataclass(slots=True)
class OrderRow:
    order_id: str
    state: OrderState
    items: tuple[Item, ...]
    ttl_seconds: int | None
    expires_at: datetime | None
    version: int
    last_event_id: str | None = None
    allow_partial: bool = False
    # pruned by retention: only its id and final state are left (a tombstone)
    pruned: bool = False


@dataclass
class Snapshot:
    orders: dict[str, OrderRow] = field(default_factory=dict)
    reservations: dict[str, list[ReservationRow]] = field(default_factory=dict)
    stocks: dict[str, StockRow] = field(default_factory=dict)
    warehouses: dict[str, Warehouse] = field(default_factory=dict)
    # Open lines with backordered units on the locked rows that have some, and the other such
    # lines of their orders (an order is filled when all of them are): what a fill may cover.
    backorders: list[ReservationRow] = field(default_factory=list)
