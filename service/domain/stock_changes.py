"""The batch's working stock: every change of a stock row, with its movement and its
``stock-changed`` message, and the stock commands (UpdateStock, SetStockPolicy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from service.domain.commands import SetStockPolicy, StockCommand, TransferStock
from service.domain.errors import FailedPrecondition, NotFound, VersionMismatch
from service.domain.plan import Movement, Plan, StockChange
from service.domain.policy_effects import PolicyEffects
from service.domain.results import StockLevel, TransferResult
from service.domain.snapshot import Snapshot, StockRow
from service.domain.stock_update import apply_update
from service.domain.values import Levels, Sku


class StockChanges:
    def __init__(
        self,
        snapshot: Snapshot,
        plan: Plan,
        effects: PolicyEffects,
        by_sku: dict[Sku, list[StockRow]],
        new_id: Callable[[], str],
    ) -> None:
        self.new_id = new_id
        self.snap = snapshot
        self.plan = plan
        self.effects = effects
        self.by_sku = by_sku

    def change(
        self,
        row: StockRow,
        after: Levels,
        operation: str,
        quantity: int,
        order_id: str | None,
        reason: str | None,
        actor: str = "engine",
        transfer_id: str | None = None,
    ) -> None:
        if not after.consistent or after.available < -row.policy.backorder_limit:
            raise AssertionError(f"stock {row.stock_id} would become {after}")  # a bug, not input
        self.effects.touch(row)
        row.levels = after
        row.version += 1
        self.plan.movements.append(
            Movement(
                row.stock_id,
                row.sku,
                row.warehouse_id,
                operation,
                quantity,
                after,
                reason,
                order_id,
                actor,
                transfer_id,
            )
        )
        self.plan.stock_changes[row.stock_id] = StockChange(row, operation, order_id)

    def row_of(self, sku: Sku, warehouse_id: str) -> StockRow:
        if warehouse_id not in self.snap.warehouses:
            raise NotFound(f"unknown warehouse {warehouse_id}")
        row = next((r for r in self.by_sku.get(sku, []) if r.warehouse_id == warehouse_id), None)
        if row is None:
            raise NotFound(f"no stock of {sku.key} in {warehouse_id}")
        return row

    def apply(self, command: StockCommand, duplicate: bool) -> StockLevel | TransferResult:
        if isinstance(command, TransferStock):
            return transfer(self, command, duplicate, self.new_id)
        row = self.row_of(command.sku, command.warehouse_id)
        if duplicate:
            return replace(row.level(), duplicate=True)
        if command.expected_version is not None and command.expected_version != row.version:
            raise VersionMismatch(command.expected_version, row.version)
        if isinstance(command, SetStockPolicy):
            self._set_policy(row, command)
            return row.level()
        after = apply_update(row.levels, command.operation, command.quantity)
        self.change(
            row,
            after,
            command.operation.value,
            command.quantity,
            None,
            command.reason,
            command.actor,
        )
        return row.level()

    def _set_policy(self, row: StockRow, command: SetStockPolicy) -> None:
        policy = command.policy
        if row.levels.available < -policy.backorder_limit:
            raise FailedPrecondition(
                f"backorder_limit: {-row.levels.available} units of {row.sku.key} in "
                f"{row.warehouse_id} are backordered, more than {policy.backorder_limit}"
            )
        self.effects.touch(row)
        row.policy = policy
        # a movement of no units: the audit trail shows when the policy changed, and why
        self.change(row, row.levels, "POLICY", 0, None, command.reason, command.actor)


def transfer(
    stock: StockChanges, command: TransferStock, duplicate: bool, new_id: Callable[[], str]
) -> TransferResult:
    """Free units leave the source row and arrive at the destination's, in one step: two
    movements sharing a transfer id, a ``stock-changed`` for each row; the batch's fill then
    covers the destination's backorders as an ADD would."""
    source = stock.row_of(command.sku, command.from_warehouse)
    destination = stock.row_of(command.sku, command.to_warehouse)
    if duplicate:
        return TransferResult("", source.level(), destination.level(), duplicate=True)
    free = free_units(source)
    if command.quantity > free:
        raise FailedPrecondition(
            f"cannot transfer {command.quantity} of {command.sku.key} from "
            f"{command.from_warehouse}: {free} free (available {source.levels.available}, "
            f"reserved {source.levels.reserved}, safety stock {source.policy.safety_stock})"
        )
    transfer_id = new_id()
    quantity = command.quantity
    out = source.levels
    stock.change(
        source,
        Levels(out.available - quantity, out.reserved, out.total - quantity),
        "TRANSFER_OUT",
        quantity,
        None,
        command.reason,
        command.actor,
        transfer_id,
    )
    into = destination.levels
    stock.change(
        destination,
        Levels(into.available + quantity, into.reserved, into.total + quantity),
        "TRANSFER_IN",
        quantity,
        None,
        command.reason,
        command.actor,
        transfer_id,
    )
    return TransferResult(transfer_id, source.level(), destination.level())


def free_units(row: StockRow) -> int:
    """What a transfer may take from a row: its sellable units. Never reserved units (they are
    not in ``available``), nor the safety stock, nor units backordered lines are owed (a row
    with backorders is below its sellable zero)."""
    return max(0, row.policy.sellable(row.levels.available))
