"""What a batch records about orders beyond their stock: the lines they hold, the events
they publish, their history, and the steps that only record (a report, an extension).

The planner (``service/domain/planner.py``) is an ``OrderRecords``: these are its parts that
never touch a stock row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from service.domain.commands import Extend, OrderCommand, OrderEventKind, Source
from service.domain.events import reservation_payload
from service.domain.plan import Plan, ReservationEvent, TransitionRow
from service.domain.results import LineOutcome, OrderResult, ReservationLine
from service.domain.snapshot import OrderRow, ReservationRow, Snapshot
from service.domain.timestamps import IsoFormats
from service.domain.values import Item, OrderState, ReservationStatus, ResultStatus, Shortage


class OrderRecords:
    snap: Snapshot
    plan: Plan
    now: datetime
    iso: IsoFormats

    def _report(
        self,
        command: OrderCommand,
        order: OrderRow | None,
        status: ResultStatus,
        reason: str | None,
    ) -> OrderResult:
        """Tell the pipeline, change nothing (a cancel after commit, an extension refused)."""
        if status in (ResultStatus.NOT_EXTENDED, ResultStatus.RETURN_REFUSED):
            reason = f"order is {order.state}" if order else "unknown order"
            if order is not None and order.pruned:
                reason += " (pruned by retention: its lines are gone)"
        lines = self._lines(command.order_id)
        self._publish(command.order_id, status, lines, reason=reason)
        if order is None:
            return OrderResult(command.order_id, None, (), None, status)
        if not order.pruned:  # a pruned order's history went with it
            self._history(command, order, order.state, status)
        return OrderResult(command.order_id, order.state, tuple(lines), order.expires_at, status)

    def _extend(self, command: Extend, order: OrderRow) -> OrderResult:
        # whole seconds: a repeated call within the second changes nothing and publishes nothing
        expires = (self.now + timedelta(seconds=command.ttl_seconds)).replace(microsecond=0)
        if expires == order.expires_at:
            return self._unchanged(command.order_id, order, duplicate=False)
        row = replace(
            order, expires_at=expires, version=order.version + 1, last_event_id=command.event_id
        )
        self.snap.orders[row.order_id] = row
        self.plan.orders[row.order_id] = row
        lines = [
            line for line in self._lines(row.order_id) if line.status is ReservationStatus.PENDING
        ]
        self._publish(row.order_id, ResultStatus.EXTENDED, lines, expires_at=expires)
        self._history(command, order, row.state, ResultStatus.EXTENDED)
        return OrderResult(row.order_id, row.state, tuple(lines), expires, ResultStatus.EXTENDED)

    def _history(
        self,
        command: OrderCommand,
        order: OrderRow | None,
        state: OrderState,
        status: ResultStatus | None,
    ) -> None:
        self.plan.transitions.append(
            TransitionRow(
                command.order_id, order.state if order else None, state, status, _cause(command)
            )
        )

    def _unchanged(self, order_id: str, order: OrderRow | None, *, duplicate: bool) -> OrderResult:
        return OrderResult(
            order_id,
            order.state if order else None,
            tuple(self._lines(order_id)),
            order.expires_at if order else None,
            None,
            duplicate=duplicate,
        )

    def publish_filled(self, order_id: str, lines: list[ReservationRow]) -> None:
        self._publish(order_id, ResultStatus.BACKORDER_FILLED, [line.line() for line in lines])

    # -- reading the working state --

    def _lines(self, order_id: str) -> list[ReservationLine]:
        return [r.line() for r in self.snap.reservations.get(order_id, [])]

    def _requested(self, items: tuple[Item, ...]) -> list[ReservationLine]:
        return [
            ReservationLine(
                "", item.sku, item.warehouse_id or "", item.quantity, ReservationStatus.PENDING
            )
            for item in items
        ]

    def _publish(
        self,
        order_id: str,
        status: ResultStatus,
        lines: Sequence[ReservationLine],
        *,
        reason: str | None = None,
        shortages: tuple[Shortage, ...] = (),
        expires_at: datetime | None = None,
        outcomes: tuple[LineOutcome, ...] = (),
        restock: bool | None = None,
    ) -> None:
        payload = reservation_payload(
            order_id,
            status,
            lines,
            outcomes=outcomes,
            at=self.now,
            reason=reason,
            shortages=shortages,
            expires_at=expires_at,
            iso=self.iso,
            restock=restock,
        )
        self.plan.reservation_events.append(ReservationEvent(order_id, payload))


_RPC_OF = {
    OrderEventKind.CREATED: "rpc:ReserveStock",
    OrderEventKind.PAID: "rpc:CommitReservation",
    OrderEventKind.CANCELLED: "rpc:ReleaseReservation",
    OrderEventKind.EXTENDED: "rpc:ExtendReservation",
    OrderEventKind.RETURNED: "rpc:ReturnStock",
    OrderEventKind.EXPIRE: "expiry",
}


def _cause(command: OrderCommand) -> str:
    """What moved the order, for its history: the event id, the RPC, or the expiry."""
    if command.event_id is not None:
        return command.event_id
    return _RPC_OF[command.kind] if command.source is Source.API else _RPC_OF[OrderEventKind.EXPIRE]
