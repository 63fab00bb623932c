"""What the engine answers: per-order outcomes, stock levels and availability."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from service.domain.values import (
    Item,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Shortage,
    Sku,
)


@dataclass(frozen=True, slots=True)
class ReservationLine:
    reservation_id: str
    sku: Sku
    warehouse_id: str
    quantity: int
    status: ReservationStatus
    backordered: int = 0  # of ``quantity``, units promised beyond sellable and not yet filled


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The order's state after a command, and what (if anything) was published about it."""

    order_id: str
    state: OrderState | None
    reservations: tuple[ReservationLine, ...] = ()
    expires_at: datetime | None = None
    published: ResultStatus | None = None
    duplicate: bool = False
    shortages: tuple[Shortage, ...] = ()
    # a partial reservation: per requested line, what it got (empty for all-or-nothing)
    lines: tuple[LineOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class LineOutcome:
    """One requested line of a partial reservation: ``reserved + short == requested``."""

    sku: Sku
    warehouse_id: str | None
    requested: int
    reserved: int

    @property
    def short(self) -> int:
        return self.requested - self.reserved


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of an order's history: what moved it, and when."""

    at: datetime
    from_state: OrderState | None
    to_state: OrderState
    published: ResultStatus | None
    cause: str  # the event id, or "rpc:<Method>", or "expiry"


@dataclass(frozen=True, slots=True)
class OrderView:
    """GetOrder: an order as the ledger holds it, with its history in order."""

    order_id: str
    state: OrderState
    items: tuple[Item, ...]
    reservations: tuple[ReservationLine, ...]
    expires_at: datetime | None
    allow_partial: bool
    history: tuple[Transition, ...]


@dataclass(frozen=True, slots=True)
class StockLevel:
    stock_id: str
    sku: Sku
    warehouse_id: str
    available: int
    reserved: int
    total: int
    version: int
    safety_stock: int = 0
    reorder_point: int | None = None
    backorder_limit: int = 0
    backordered: int = 0  # units of open reservation lines promised beyond sellable
    duplicate: bool = False  # its idempotency key was seen before: the level as it is now

    @property
    def sellable(self) -> int:
        """What reads report as available: the safety stock is never promised."""
        return self.available - self.safety_stock


@dataclass(frozen=True, slots=True)
class TransferResult:
    """Both rows of a TransferStock after it; ``transfer_id`` names its two movements (empty
    for a repeated idempotency key, which moved nothing)."""

    transfer_id: str
    source: StockLevel
    destination: StockLevel
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class StockView:
    """A SKU in every warehouse that holds it, plus the sum across them."""

    sku: Sku
    warehouses: tuple[StockLevel, ...]
    available: int = 0
    reserved: int = 0
    total: int = 0

    @classmethod
    def of(cls, sku: Sku, levels: tuple[StockLevel, ...]) -> StockView:
        return cls(
            sku,
            levels,
            sum(level.available for level in levels),
            sum(level.reserved for level in levels),
            sum(level.total for level in levels),
        )


@dataclass(frozen=True, slots=True)
class Availability:
    sku: Sku
    requested: int
    available: int
    warehouse_id: str | None = None
    known: bool = True
    warehouses: dict[str, int] = field(default_factory=dict)

    @property
    def sufficient(self) -> bool:
        return self.known and self.available >= self.requested


@dataclass(frozen=True, slots=True)
class MovementView:
    """One row of the movement ledger (``stock_movements``): a change of one stock row."""

    id: int
    stock_id: str
    sku: Sku
    warehouse_id: str
    operation: str  # RESERVE, ..., POLICY, TRANSFER_OUT, TRANSFER_IN, RETURN, RETURN_DAMAGED
    quantity: int
    available_after: int
    reserved_after: int
    total_after: int
    reason: str | None
    order_id: str | None
    actor: str
    created_at: datetime
    transfer_id: str | None = None  # TRANSFER_OUT and TRANSFER_IN of one transfer share it


T = TypeVar("T")
K = TypeVar("K")


# Not slotted: a slotted generic dataclass cannot be built as ``Page[X, Y](...)`` in 3.11.
@dataclass(frozen=True)
class Page(Generic[T, K]):
    """One page of a listing: its items in order, and where the next page starts (``next``:
    the key of the row to continue after, or the page token built from it); ``None`` on the
    last page. A page may hold fewer items than asked for, none even, and still not be the last
    (docs/architecture.md, "Queries and pagination")."""

    items: tuple[T, ...]
    next: K | None = None
