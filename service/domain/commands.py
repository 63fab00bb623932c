"""Commands: what a caller (an order event or an RPC) asks the engine to do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.values import Item, Sku, StockOperation, StockPolicy


class Source(StrEnum):
    """Order events and RPCs share one state machine but answer a few cells differently."""

    STREAM = "stream"
    API = "api"


class OrderEventKind(StrEnum):
    CREATED = "created"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRE = "expire"
    EXTENDED = "extended"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class Reserve:
    order_id: str
    items: tuple[Item, ...]
    ttl_seconds: int
    source: Source = Source.API
    event_id: str | None = None
    # each line reserves what it can (at least one unit over the order, or it is REJECTED)
    allow_partial: bool = False

    kind = OrderEventKind.CREATED


@dataclass(frozen=True, slots=True)
class Commit:
    order_id: str
    source: Source = Source.API
    event_id: str | None = None

    kind = OrderEventKind.PAID


@dataclass(frozen=True, slots=True)
class Release:
    order_id: str
    reason: str | None = None
    source: Source = Source.API
    event_id: str | None = None

    kind = OrderEventKind.CANCELLED


@dataclass(frozen=True, slots=True)
class Expire:
    """Expire the order's reservations if they are still pending and due."""

    order_id: str
    source: Source = Source.STREAM
    event_id: str | None = None

    kind = OrderEventKind.EXPIRE


@dataclass(frozen=True, slots=True)
class UpdateStock:
    sku: Sku
    warehouse_id: str
    operation: StockOperation
    quantity: int
    reason: str
    actor: str = "admin"
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SetStockPolicy:
    """Replace a stock row's policy (every field: what is not given is its default)."""

    sku: Sku
    warehouse_id: str
    policy: StockPolicy
    reason: str = ""
    actor: str = "admin"
    expected_version: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Extend:
    """A RESERVED order's hold runs until now + ``ttl_seconds`` (within the configured bounds)."""

    order_id: str
    ttl_seconds: int
    source: Source = Source.API
    event_id: str | None = None

    kind = OrderEventKind.EXTENDED


@dataclass(frozen=True, slots=True)
class Return:
    """Units of a COMMITTED order come back to the rows they left: ``restock`` makes them
    available again, otherwise they are recorded as damaged. No items: all that is left."""

    order_id: str
    items: tuple[Item, ...] = ()
    restock: bool = True
    reason: str | None = None
    source: Source = Source.API
    event_id: str | None = None
    actor: str = "engine"  # recorded on the movements (the admin, for ReturnStock)

    kind = OrderEventKind.RETURNED


@dataclass(frozen=True, slots=True)
class TransferStock:
    """Move free on-hand units of a SKU from one warehouse's row to another's."""

    sku: Sku
    from_warehouse: str
    to_warehouse: str
    quantity: int
    reason: str = ""
    actor: str = "admin"
    idempotency_key: str | None = None

    @property
    def warehouse_id(self) -> str:
        """The row the command is checked against first: the source."""
        return self.from_warehouse


OrderCommand = Reserve | Commit | Release | Expire | Extend | Return
StockCommand = UpdateStock | SetStockPolicy | TransferStock
Command = OrderCommand | StockCommand
