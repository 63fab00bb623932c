"""The batch's working stock: every change of a stock row, with its movement and its
``stock-changed`` message, and the stock commands (UpdateStock, SetStockPolicy)."""

from __future__ import annotations

from service.domain.commands import SetStockPolicy, StockCommand
from service.domain.errors import FailedPrecondition, NotFound, VersionMismatch
from service.domain.plan import Movement, Plan, StockChange
from service.domain.policy_effects import PolicyEffects
from service.domain.results import StockLevel
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
    ) -> None:
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
            )
        )
        self.plan.stock_changes[row.stock_id] = StockChange(row, operation, order_id)

    def apply(self, command: StockCommand, duplicate: bool) -> StockLevel:
        if command.warehouse_id not in self.snap.warehouses:
            raise NotFound(f"unknown warehouse {command.warehouse_id}")
        row = next(
            (r for r in self.by_sku.get(command.sku, []) if r.warehouse_id == command.warehouse_id),
            None,
        )
        if row is None:
            raise NotFound(f"no stock of {command.sku.key} in {command.warehouse_id}")
        if duplicate:
            return row.level()
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
