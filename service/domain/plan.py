"""The plan of a batch: the answers, and every row and message the engine writes for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from service.domain.errors import InventoryError
from service.domain.events import stock_alert_payload, stock_changed_payload
from service.domain.policies import Alert
from service.domain.results import OrderResult, StockLevel, TransferResult
from service.domain.snapshot import OrderRow, ReservationRow, StockRow
from service.domain.values import Levels, OrderState, ReservationStatus, ResultStatus, Sku

# Slotted and not frozen, like the snapshot's rows: a batch makes thousands of these, and a
# frozen dataclass's __init__ costs about twice as much.


@dataclass(slots=True)
class Movement:
    stock_id: str
    sku: Sku
    warehouse_id: str
    operation: str
    quantity: int
    after: Levels
    reason: str | None
    order_id: str | None
    actor: str
    # TRANSFER_OUT and TRANSFER_IN of one transfer share it: each names the other
    transfer_id: str | None = None


@dataclass(slots=True)
class ReservationEvent:
    """An ``inventory-reservations`` message, keyed by order id."""

    order_id: str
    payload: dict[str, Any]


@dataclass(slots=True)
class StockChange:
    """The last state of a stock row in this batch: one ``stock-changed`` message."""

    row: StockRow
    cause: str
    order_id: str | None

    def payload(self, at: datetime) -> dict[str, Any]:
        return stock_changed_payload(self.row, self.cause, self.order_id, at)


Result = OrderResult | StockLevel | TransferResult | InventoryError


@dataclass(slots=True)
class TransitionRow:
    """A row of ``order_history``: the batch's time is the transaction's, written by the db."""

    order_id: str
    from_state: OrderState | None
    to_state: OrderState
    published: ResultStatus | None
    cause: str


class OutboxMessage(NamedTuple):
    topic: str
    key: str
    payload: dict[str, Any]


@dataclass
class Plan:
    results: list[Result] = field(default_factory=list)
    new_reservations: list[ReservationRow] = field(default_factory=list)
    reservation_status: dict[str, ReservationStatus] = field(default_factory=dict)
    orders: dict[str, OrderRow] = field(default_factory=dict)
    movements: list[Movement] = field(default_factory=list)
    stock_changes: dict[str, StockChange] = field(default_factory=dict)
    reservation_events: list[ReservationEvent] = field(default_factory=list)
    # reservation id -> its units still backordered, for lines that restock (partly) filled
    backorder_fills: dict[str, int] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    transitions: list[TransitionRow] = field(default_factory=list)
    # reservation id -> its units returned in all, for COMMITTED lines a return touched
    returns: dict[str, int] = field(default_factory=dict)

    @property
    def changed_stock_ids(self) -> set[str]:
        return set(self.stock_changes)

    def outbox(
        self,
        at: datetime,
        *,
        stock_changed_topic: str,
        reservations_topic: str,
        stock_alerts_topic: str,
    ) -> list[OutboxMessage]:
        """Every message of the batch, in the order the relay publishes them: stock rows by
        id (a stable order across batches), the orders' events in decision order, then the
        alerts the batch's changes crossed into."""
        messages = [
            OutboxMessage(stock_changed_topic, change.row.sku.key, change.payload(at))
            for change in sorted(self.stock_changes.values(), key=lambda c: c.row.stock_id)
        ]
        messages.extend(
            OutboxMessage(reservations_topic, event.order_id, event.payload)
            for event in self.reservation_events
        )
        messages.extend(
            OutboxMessage(stock_alerts_topic, alert.sku.key, stock_alert_payload(alert, at))
            for alert in self.alerts
        )
        return messages
