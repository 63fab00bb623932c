"""Returns: units of a COMMITTED order come back to the stock rows they left.

Per SKU, a return takes at most what the order's COMMITTED lines delivered and has not yet
had back: ``quantity - backordered - returned`` summed over the lines (backordered units were
promised, never delivered). A return asking more than that for any SKU is refused whole.
Restocked units go back on the line's own row (available and total up, so a backorder there
is filled as by an ADD); damaged ones are a ``RETURN_DAMAGED`` movement of no level change:
they left the books when the order committed and do not come back as stock.
"""

from __future__ import annotations

from dataclasses import replace

from service.domain.commands import Return, Source
from service.domain.errors import FailedPrecondition
from service.domain.order_records import OrderRecords
from service.domain.results import OrderResult, ReservationLine
from service.domain.snapshot import OrderRow, ReservationRow
from service.domain.stock_changes import StockChanges
from service.domain.values import Levels, ReservationStatus, ResultStatus, Sku

RESTOCK = "RETURN"
DAMAGED = "RETURN_DAMAGED"


def returnable(line: ReservationRow) -> int:
    if line.status is not ReservationStatus.COMMITTED:
        return 0
    return line.quantity - line.backordered - line.returned


class OrderReturns(OrderRecords):
    stock: StockChanges

    def _return(self, command: Return, order: OrderRow) -> OrderResult:
        rows = self.snap.reservations.get(order.order_id, [])
        left: dict[Sku, int] = {}
        for line in rows:
            left[line.sku] = left.get(line.sku, 0) + returnable(line)
        wanted = _wanted(command, left)
        refusal = _refusal(wanted, left)
        if refusal is not None:
            if command.source is Source.API:
                raise FailedPrecondition(f"order {order.order_id}: {refusal}")
            self._publish(order.order_id, ResultStatus.RETURN_REFUSED, [], reason=refusal)
            self._history(command, order, order.state, ResultStatus.RETURN_REFUSED)
            return OrderResult(
                order.order_id,
                order.state,
                tuple(self._lines(order.order_id)),
                None,
                ResultStatus.RETURN_REFUSED,
            )
        returned: list[ReservationLine] = []
        for position, line in enumerate(rows):
            units = min(wanted.get(line.sku, 0), returnable(line))
            if units <= 0:
                continue
            wanted[line.sku] -= units
            self._take_back(command, line, units)
            rows[position] = replace(line, returned=line.returned + units)
            self.plan.returns[line.reservation_id] = line.returned + units
            returned.append(replace(line.line(), quantity=units, backordered=0))
        self._publish(
            order.order_id,
            ResultStatus.RETURNED,
            returned,
            reason=command.reason,
            restock=command.restock,
        )
        self._history(command, order, order.state, ResultStatus.RETURNED)
        return OrderResult(
            order.order_id, order.state, tuple(returned), None, ResultStatus.RETURNED
        )

    def _take_back(self, command: Return, line: ReservationRow, units: int) -> None:
        row = self.snap.stocks[line.stock_id]
        levels = row.levels
        if command.restock:
            after = Levels(levels.available + units, levels.reserved, levels.total + units)
        else:
            after = levels
        operation = RESTOCK if command.restock else DAMAGED
        self.stock.change(
            row, after, operation, units, line.order_id, command.reason, command.actor
        )


def _wanted(command: Return, left: dict[Sku, int]) -> dict[Sku, int]:
    if not command.items:
        return {sku: units for sku, units in left.items() if units > 0}
    wanted: dict[Sku, int] = {}
    for item in command.items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    return wanted


def _refusal(wanted: dict[Sku, int], left: dict[Sku, int]) -> str | None:
    if not wanted:
        return "nothing left to return"
    over = [
        f"{sku.key} asked {units}, returnable {left.get(sku, 0)}"
        for sku, units in sorted(wanted.items())
        if units > left.get(sku, 0)
    ]
    if over:
        return "return exceeds what the order committed and has not returned: " + ", ".join(over)
    return None
