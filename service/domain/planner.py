"""Plans one group-committed batch: commands in, decisions and the rows to write out.

The engine loads a snapshot of every row the batch may touch (orders, their reservations,
the stock rows of their SKUs, locked), and this module decides, command by command in arrival
order, what happens. It is pure: no I/O, no clock, no randomness (ids and time come in).
The engine then writes the plan in a handful of bulk statements and commits once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from service.domain.commands import (
    Command,
    Expire,
    Extend,
    OrderCommand,
    Reserve,
    Return,
    Source,
    StockCommand,
)
from service.domain.errors import (
    AlreadyExists,
    InsufficientStock,
    InventoryError,
    NotFound,
    WrongState,
)
from service.domain.order_machine import (
    Action,
    Step,
    next_step,
    pruned_step,
    published_status,
)
from service.domain.partial import allocate_partially
from service.domain.plan import Plan, Result
from service.domain.policies import Allocation, allocate_with_policies
from service.domain.policy_effects import PolicyEffects
from service.domain.results import (
    LineOutcome,
    OrderResult,
    ReservationLine,
    StockLevel,
    TransferResult,
)
from service.domain.returns import OrderReturns
from service.domain.snapshot import OrderRow, ReservationRow, Snapshot, StockRow
from service.domain.stock_changes import StockChanges
from service.domain.timestamps import IsoFormats
from service.domain.values import (
    Item,
    OrderState,
    ReservationStatus,
    Shortage,
    Sku,
)


def plan_batch(
    snapshot: Snapshot,
    commands: Sequence[Command],
    *,
    duplicates: frozenset[int],
    now: datetime,
    allow_split: bool,
    new_id: Callable[[], str],
) -> Plan:
    """Decide every command of a batch, in order. ``duplicates`` are indices of redeliveries."""
    planner = _Planner(snapshot, now, allow_split, new_id)
    for index, command in enumerate(commands):
        planner.plan.results.append(planner.decide(command, index in duplicates))
    plan = planner.plan
    planner.effects.finish(plan, planner.by_sku, planner.publish_filled)
    for index, result in enumerate(plan.results):
        # the fill ran after the command answered: the row's last answer shows what it left
        if isinstance(result, StockLevel):
            plan.results[index] = _after_fill(snapshot, result)
        elif isinstance(result, TransferResult):
            plan.results[index] = replace(
                result, destination=_after_fill(snapshot, result.destination)
            )
    return plan


def _after_fill(snapshot: Snapshot, level: StockLevel) -> StockLevel:
    row = snapshot.stocks[level.stock_id]
    if row.version == level.version and row.backordered != level.backordered:
        return replace(row.level(), duplicate=level.duplicate)
    return level


class _Planner(OrderReturns):
    def __init__(
        self, snapshot: Snapshot, now: datetime, allow_split: bool, new_id: Callable[[], str]
    ) -> None:
        self.snap = snapshot
        self.now = now
        self.allow_split = allow_split
        self.new_id = new_id
        self.plan = Plan()
        # most orders of a batch share a TTL, hence an expiry time: computed and formatted once
        self.expiry_after: dict[int, datetime] = {}
        self.iso = IsoFormats()
        self.by_sku: dict[Sku, list[StockRow]] = {}
        for row in snapshot.stocks.values():
            self.by_sku.setdefault(row.sku, []).append(row)
        self.effects = PolicyEffects(snapshot, now)
        self.stock = StockChanges(snapshot, self.plan, self.effects, self.by_sku, new_id)

    def decide(self, command: Command, duplicate: bool) -> Result:
        try:
            if isinstance(command, StockCommand):
                return self.stock.apply(command, duplicate)
            return self._order(command, duplicate)
        except InventoryError as error:
            return error

    # -- orders --

    def _order(self, command: OrderCommand, duplicate: bool) -> OrderResult:
        order = self.snap.orders.get(command.order_id)
        if duplicate:
            return self._unchanged(command.order_id, order, duplicate=True)
        step = next_step(order.state if order else None, command.kind, command.source)
        if order is not None and order.pruned:
            step = pruned_step(step, command.source)
        if step.action is Action.NOT_FOUND:
            raise NotFound(f"order {command.order_id} has no reservation")
        if step.action is Action.WRONG_STATE:
            state = order.state if order else "unknown"
            pruned = " (pruned by retention)" if order and order.pruned else ""
            raise WrongState(f"order {command.order_id} is {state}{pruned}")
        if step.action is Action.DUPLICATE:
            return self._duplicate(command, order)
        if isinstance(command, Expire) and not self._due(order):
            return self._unchanged(command.order_id, order, duplicate=True)
        return self._apply(command, order, step)

    def _due(self, order: OrderRow | None) -> bool:
        return order is not None and order.expires_at is not None and order.expires_at <= self.now

    def _duplicate(self, command: OrderCommand, order: OrderRow | None) -> OrderResult:
        if (
            isinstance(command, Reserve)
            and command.source is Source.API
            and order is not None
            and not order.pruned  # its items went with it
            and _same_items(order.items, command.items) is False
        ):
            raise AlreadyExists(f"order {command.order_id} exists with different items")
        return self._unchanged(command.order_id, order, duplicate=True)

    def _apply(self, command: OrderCommand, order: OrderRow | None, step: Step) -> OrderResult:
        items = command.items if isinstance(command, Reserve) else (order.items if order else ())
        ttl = command.ttl_seconds if isinstance(command, Reserve) else None
        if ttl is None and order is not None:
            ttl = order.ttl_seconds
        reason = getattr(command, "reason", None)
        action = step.action
        if action in (Action.RESERVE, Action.RESERVE_AND_COMMIT):
            return self._reserve(command, order, step, items, ttl)
        if action is Action.COMMIT:
            lines = self._settle(command.order_id, ReservationStatus.COMMITTED, "COMMIT", reason)
        elif action is Action.RELEASE:
            lines = self._settle(command.order_id, ReservationStatus.RELEASED, "RELEASE", reason)
        elif action is Action.EXPIRE:
            lines = self._settle(command.order_id, ReservationStatus.EXPIRED, "EXPIRE", reason)
        elif action is Action.REPORT:
            assert step.report is not None
            return self._report(command, order, step.report, reason)
        elif action is Action.EXTEND:
            assert isinstance(command, Extend) and order is not None
            return self._extend(command, order)
        elif action is Action.RETURN:
            assert isinstance(command, Return) and order is not None
            return self._return(command, order)
        else:  # MOVE
            lines = []
        assert step.success is not None
        expires = order.expires_at if order else None
        return self._transition(command, order, step.success, items, ttl, expires, lines, reason)

    def _reserve(
        self,
        command: OrderCommand,
        order: OrderRow | None,
        step: Step,
        items: tuple[Item, ...],
        ttl: int | None,
    ) -> OrderResult:
        and_commit = step.action is Action.RESERVE_AND_COMMIT
        outcomes: tuple[LineOutcome, ...] = ()
        if _allows_partial(command, order):
            allocation, shortages, outcomes = allocate_partially(
                items,
                self.by_sku,
                self.snap.warehouses,
                allow_split=self.allow_split,
                raise_unknown=command.source is Source.API,
            )
            if allocation:  # at least one line got units: what is short is in ``outcomes``
                shortages = []
        else:
            allocation, shortages = allocate_with_policies(
                items,
                self.by_sku,
                self.snap.warehouses,
                {},  # each row's own policy
                allow_split=self.allow_split,
                raise_unknown=command.source is Source.API,
            )
        if not shortages:
            assert step.success is not None
            expires = self.now if and_commit else self._expiry(ttl or 0)
            lines = self._take(command.order_id, allocation, expires, and_commit)
            return self._transition(
                command, order, step.success, items, ttl, expires, lines, None, outcomes=outcomes
            )
        if command.source is Source.API:
            raise InsufficientStock(shortages)
        assert step.failure is not None
        return self._transition(
            command, order, step.failure, items, ttl, None, (), None, shortages=tuple(shortages)
        )

    def _expiry(self, ttl_seconds: int) -> datetime:
        expires = self.expiry_after.get(ttl_seconds)
        if expires is None:
            expires = self.expiry_after[ttl_seconds] = self.now + timedelta(seconds=ttl_seconds)
        return expires

    def _transition(
        self,
        command: OrderCommand,
        order: OrderRow | None,
        state: OrderState,
        items: tuple[Item, ...],
        ttl: int | None,
        expires_at: datetime | None,
        lines: Sequence[ReservationLine],
        reason: str | None,
        *,
        shortages: tuple[Shortage, ...] = (),
        outcomes: tuple[LineOutcome, ...] = (),
    ) -> OrderResult:
        row = OrderRow(
            order_id=command.order_id,
            state=state,
            items=items,
            ttl_seconds=ttl,
            expires_at=expires_at,
            version=(order.version + 1) if order else 1,
            last_event_id=command.event_id,
            allow_partial=_allows_partial(command, order),
        )
        self.snap.orders[row.order_id] = row
        self.plan.orders[row.order_id] = row
        status = published_status(state)
        self._history(command, order, state, status)
        if status is not None:
            shown = lines if lines else self._requested(items) if shortages else ()
            self._publish(
                row.order_id,
                status,
                shown,
                reason=reason,
                shortages=shortages,
                expires_at=expires_at if state is OrderState.RESERVED else None,
                outcomes=outcomes,
            )
        return OrderResult(
            row.order_id,
            state,
            # a new order holds exactly what this step took
            tuple(lines) if order is None else tuple(self._lines(row.order_id)),
            expires_at,
            status,
            shortages=shortages,
            lines=outcomes,
        )

    # -- stock effects --

    def _take(
        self,
        order_id: str,
        allocation: Allocation,
        expires_at: datetime,
        and_commit: bool,
    ) -> list[ReservationLine]:
        """Reserve the allocation; the order's lines in the new reservations' status."""
        status = ReservationStatus.COMMITTED if and_commit else ReservationStatus.PENDING
        reservations = self.snap.reservations
        lines = [r.line() for r in reservations.get(order_id, ()) if r.status is status]
        stocks = self.snap.stocks
        new_reservations = self.plan.new_reservations
        for item, takes in allocation:
            for take in takes:
                row = stocks[take.stock_id]
                quantity = take.quantity
                self.stock.change(
                    row, row.levels.reserve(quantity), "RESERVE", quantity, order_id, None
                )
                if and_commit:
                    self.stock.change(
                        row, row.levels.ship(quantity), "COMMIT", quantity, order_id, None
                    )
                reservation = ReservationRow(
                    reservation_id=self.new_id(),
                    order_id=order_id,
                    stock_id=row.stock_id,
                    sku=item.sku,
                    warehouse_id=row.warehouse_id,
                    quantity=quantity,
                    status=status,
                    expires_at=expires_at,
                    backordered=take.backordered,
                    created_at=self.now,
                )
                self.effects.opened(reservation)
                new_reservations.append(reservation)
                reservations.setdefault(order_id, []).append(reservation)
                lines.append(reservation.line())
        return lines

    def _settle(
        self, order_id: str, status: ReservationStatus, operation: str, reason: str | None
    ) -> list[ReservationLine]:
        """Move every pending reservation of the order to ``status``, with its stock effect."""
        settled: list[ReservationLine] = []
        rows = self.snap.reservations.get(order_id, [])
        for position, reservation in enumerate(rows):
            if reservation.status is not ReservationStatus.PENDING:
                continue
            stock = self.snap.stocks[reservation.stock_id]
            quantity = reservation.quantity
            after = (
                stock.levels.ship(quantity)
                if status is ReservationStatus.COMMITTED
                else stock.levels.unreserve(quantity)
            )
            self.stock.change(stock, after, operation, quantity, order_id, reason)
            self.effects.closed(reservation, status, self.plan)
            rows[position] = replace(
                reservation,
                status=status,
                backordered=self.effects.backordered(
                    reservation.reservation_id, reservation.backordered
                )
                if status is ReservationStatus.COMMITTED
                else 0,
            )
            self.plan.reservation_status[reservation.reservation_id] = status
            settled.append(rows[position].line())
        return settled


def _same_items(recorded: tuple[Item, ...], requested: tuple[Item, ...]) -> bool:
    return sorted(recorded, key=_item_key) == sorted(requested, key=_item_key)


def _item_key(item: Item) -> tuple[str, str, str, int]:
    return (item.sku.product_id, item.sku.variant_id or "", item.warehouse_id or "", item.quantity)


def _allows_partial(command: OrderCommand, order: OrderRow | None) -> bool:
    if isinstance(command, Reserve):
        return command.allow_partial
    return order is not None and order.allow_partial
