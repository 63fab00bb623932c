"""Values of the inventory domain: SKUs, items, stock levels and the states things can be in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OrderState(StrEnum):
    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    PAID_EARLY = "PAID_EARLY"
    CANCELLED_EARLY = "CANCELLED_EARLY"
    EXPIRED = "EXPIRED"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    COMMIT_FAILED = "COMMIT_FAILED"


class ReservationStatus(StrEnum):
    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class StockOperation(StrEnum):
    ADD = "ADD"
    SUBTRACT = "SUBTRACT"
    SET = "SET"


class ResultStatus(StrEnum):
    """What an ``inventory-reservations`` event tells the order pipeline."""

    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    COMMITTED = "COMMITTED"
    COMMIT_FAILED = "COMMIT_FAILED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"
    CANCEL_AFTER_COMMIT = "CANCEL_AFTER_COMMIT"
    BACKORDER_FILLED = "BACKORDER_FILLED"  # restock covered every backordered unit of the order
    EXTENDED = "EXTENDED"  # a RESERVED order's hold runs to a new expires_at
    NOT_EXTENDED = "NOT_EXTENDED"  # an order-extended event that changed nothing, and why
    RETURNED = "RETURNED"  # units of a COMMITTED order came back (restocked or damaged)
    RETURN_REFUSED = "RETURN_REFUSED"  # an order-returned event that changed nothing, and why


@dataclass(frozen=True, slots=True)
class Sku:
    product_id: str
    variant_id: str | None = None

    def __lt__(self, other: Sku) -> bool:
        # a SKU without a variant sorts before the product's variants (None is not comparable)
        return (self.product_id, self.variant_id or "") < (other.product_id, other.variant_id or "")

    @property
    def key(self) -> str:
        """The Kafka key and cache key of a SKU: ``product_id[:variant_id]``."""
        return (
            self.product_id if self.variant_id is None else f"{self.product_id}:{self.variant_id}"
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One line of an order: a quantity of a SKU, optionally pinned to a warehouse."""

    sku: Sku
    quantity: int
    warehouse_id: str | None = None


@dataclass(frozen=True, slots=True)
class Levels:
    available: int
    reserved: int
    total: int

    @property
    def consistent(self) -> bool:
        # ``available`` may be negative on a row that allows backorders: the planner holds
        # each row to its own floor (``-backorder_limit``)
        return self.reserved >= 0 and self.total == self.available + self.reserved

    def reserve(self, quantity: int) -> Levels:
        return Levels(self.available - quantity, self.reserved + quantity, self.total)

    def unreserve(self, quantity: int) -> Levels:
        """Return reserved stock to the available pool (release, expiry)."""
        return Levels(self.available + quantity, self.reserved - quantity, self.total)

    def ship(self, quantity: int) -> Levels:
        """A committed reservation leaves the warehouse: reserved and on-hand both drop."""
        return Levels(self.available, self.reserved - quantity, self.total - quantity)


@dataclass(frozen=True, slots=True)
class Shortage:
    """What was missing when an order could not be reserved."""

    sku: Sku
    requested: int
    available: int
    warehouse_id: str | None = None


@dataclass(frozen=True, slots=True)
class StockPolicy:
    """What one stock row may promise. Build one from input with ``validate_policy``: the
    arithmetic below assumes no field is negative."""

    safety_stock: int = 0  # units never promised online
    reorder_point: int | None = None  # LOW_STOCK at or below it; None: no alert
    backorder_limit: int = 0  # units that may be promised beyond sellable; 0: no backorders

    def sellable(self, available: int) -> int:
        """What reads report and what is promised from stock. Below zero while the row is
        backordered, or holds less than its safety stock (a SUBTRACT, a raised policy)."""
        return available - self.safety_stock

    def reservable(self, available: int) -> int:
        """What reservations may take: sellable plus the backorder allowance."""
        return available - self.safety_stock + self.backorder_limit

    @property
    def floor(self) -> int:
        """The lowest ``available`` a reservation may leave: reserving q needs
        ``available - q >= floor``, that is ``q <= reservable(available)``.

        Backorders are counted beyond *sellable*, not beyond zero, so the safety stock stays
        unpromised with or without them: the floor is ``safety_stock - backorder_limit``.
        Without backorders that is the safety stock itself (0 by default: today's rule, never
        below zero); with them it may be negative, but never below ``-backorder_limit``, the
        bound on backordered units, since the safety stock is not negative. It bounds
        reservations only: a SUBTRACT or a raised safety stock may leave a row below it, and
        the row then promises nothing until stock comes back above it.
        """
        return self.safety_stock - self.backorder_limit


DEFAULT_POLICY = StockPolicy()
