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
        return (
            self.available >= 0
            and self.reserved >= 0
            and self.total == self.available + self.reserved
        )

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
