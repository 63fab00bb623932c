"""What a batch's stock changes mean under the rows' policies: backorder fills and alerts.

The planner reports every stock row it is about to change (``touch``) and every reservation
line it opens or closes; at the end of the batch ``finish`` fills backordered lines from the
stock the batch brought (restocks, releases, expiries, a lowered safety stock) and finds the
alerts the batch crossed into. Both compare the state before the batch with the state after
it: a batch commits whole, so no reader ever sees a state between two of its commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from service.domain.plan import Plan
from service.domain.policies import (
    BackorderedLine,
    RowSellable,
    alerts_between,
    fill_backorders,
)
from service.domain.snapshot import ReservationRow, Snapshot, StockRow
from service.domain.values import ReservationStatus, Sku

OPEN = (ReservationStatus.PENDING, ReservationStatus.COMMITTED)


class PolicyEffects:
    def __init__(self, snapshot: Snapshot, now: datetime) -> None:
        self._snap = snapshot
        self._now = now
        self._before: dict[str, RowSellable] = {}
        # every open backordered line the batch knows of: those the engine loaded (the rows'
        # and, for whole-order answers, their orders' other lines) and those the batch opens
        self._lines: dict[str, ReservationRow] = {
            row.reservation_id: row for row in snapshot.backorders
        }

    def touch(self, row: StockRow) -> None:
        """Before ``row`` changes (levels or policy): remember what the alerts compare with."""
        if row.stock_id not in self._before:
            self._before[row.stock_id] = RowSellable.of(row, row.policy)

    def opened(self, line: ReservationRow) -> None:
        if line.backordered:
            self._lines[line.reservation_id] = line
            self._snap.stocks[line.stock_id].backordered += line.backordered

    def closed(self, line: ReservationRow, status: ReservationStatus, plan: Plan) -> None:
        """A line leaves PENDING: released or expired, its backordered units are owed no more;
        committed, they stay owed until stock arrives."""
        known = self._lines.get(line.reservation_id)
        backordered = known.backordered if known is not None else line.backordered
        if not backordered:
            return
        if status in OPEN:
            self._lines[line.reservation_id] = replace(line, status=status, backordered=backordered)
            return
        del self._lines[line.reservation_id]
        self._snap.stocks[line.stock_id].backordered -= backordered
        plan.backorder_fills[line.reservation_id] = 0

    def backordered(self, reservation_id: str, recorded: int) -> int:
        """A line's backordered units as this batch knows them (a fill may have changed them)."""
        known = self._lines.get(reservation_id)
        return known.backordered if known is not None else recorded

    def finish(
        self,
        plan: Plan,
        by_sku: dict[Sku, list[StockRow]],
        publish_filled: Callable[[str, list[ReservationRow]], None],
    ) -> None:
        self._fill(plan, publish_filled)
        self._alert(plan, by_sku)

    def _fill(
        self, plan: Plan, publish_filled: Callable[[str, list[ReservationRow]], None]
    ) -> None:
        stocks = self._snap.stocks
        gaining = {
            stock_id: row.policy.sellable(row.levels.available)
            for stock_id in self._before
            if (row := stocks[stock_id]).backordered > 0
        }
        if not gaining:
            return
        fill = fill_backorders(gaining, (_open_line(line) for line in self._lines.values()))
        for line_fill in fill.lines:
            line = self._lines[line_fill.reservation_id]
            self._lines[line.reservation_id] = replace(
                line, backordered=line_fill.still_backordered
            )
            stocks[line.stock_id].backordered -= line_fill.filled
            plan.backorder_fills[line.reservation_id] = line_fill.still_backordered
            self._refresh(line.order_id, line.reservation_id, line_fill.still_backordered)
        for order_id in fill.orders_filled:
            publish_filled(
                order_id, [line for line in self._lines.values() if line.order_id == order_id]
            )

    def _refresh(self, order_id: str, reservation_id: str, backordered: int) -> None:
        """Keep the batch's own view of the order's lines (its answers, its events) current."""
        rows = self._snap.reservations.get(order_id, [])
        for position, row in enumerate(rows):
            if row.reservation_id == reservation_id:
                rows[position] = replace(row, backordered=backordered)

    def _alert(self, plan: Plan, by_sku: dict[Sku, list[StockRow]]) -> None:
        stocks = self._snap.stocks
        skus = dict.fromkeys(stocks[stock_id].sku for stock_id in self._before)
        before: list[RowSellable] = []
        after: list[RowSellable] = []
        for sku in skus:
            for row in by_sku.get(sku, ()):
                now = RowSellable.of(row, row.policy)
                after.append(now)
                before.append(self._before.get(row.stock_id, now))
        plan.alerts.extend(alerts_between(before, after))


def _open_line(line: ReservationRow) -> BackorderedLine:
    assert line.created_at is not None
    return BackorderedLine(
        line.reservation_id, line.order_id, line.stock_id, line.backordered, line.created_at
    )


def open_lines(lines: Iterable[ReservationRow]) -> list[ReservationRow]:
    return [line for line in lines if line.status in OPEN and line.backordered > 0]
