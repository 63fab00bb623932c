"""What the engine gathers for a batch's snapshot besides the rows it loads: the SKUs whose
stock rows it locks, and the backordered lines a fill may cover."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from asyncpg import Connection

from db import ledger
from service.domain.commands import Command, Reserve, StockCommand, TransferStock, UpdateStock
from service.domain.snapshot import ReservationRow, Snapshot
from service.domain.values import Sku, StockOperation


def skus_of(commands: Sequence[Command], snapshot: Snapshot) -> set[Sku]:
    """The SKUs whose stock rows the batch locks: its commands', its orders' items', and its
    orders' reservations' (a line's row, found by its SKU: the lock goes by SKU only)."""
    skus: set[Sku] = set()
    for command in commands:
        if isinstance(command, Reserve):
            skus.update(item.sku for item in command.items)
        elif isinstance(command, StockCommand):
            skus.add(command.sku)
    for order in snapshot.orders.values():  # paid after rejection or expiry reserves again
        skus.update(item.sku for item in order.items)
    for rows in snapshot.reservations.values():
        skus.update(row.sku for row in rows)
    return skus


def add_backorders(snapshot: Snapshot, lines: list[ReservationRow]) -> None:
    """The lines as locked are current: the batch's orders' lines were read before their rows
    were locked, and a fill committed meanwhile by another batch shows only here. A line of
    theirs still backordered is among ``lines`` (its row is locked and has backorders)."""
    snapshot.backorders = lines
    fresh = {line.reservation_id: line.backordered for line in lines}
    for rows in snapshot.reservations.values():
        for position, row in enumerate(rows):
            if row.backordered and row.backordered != fresh.get(row.reservation_id, 0):
                rows[position] = replace(row, backordered=fresh.get(row.reservation_id, 0))


async def ensure_update_targets(
    conn: Connection, commands: Sequence[Command], snapshot: Snapshot
) -> set[str]:
    """ADD and SET may create a stock row, and so may a transfer at its destination; rows
    created but unused are deleted again."""
    wanted = [
        (str(uuid.uuid4()), c.sku, warehouse_id)
        for c in commands
        if isinstance(c, StockCommand)
        and (warehouse_id := _created_at(c)) is not None
        and warehouse_id in snapshot.warehouses
    ]
    return await ledger.ensure_stocks(conn, wanted)


def _created_at(command: StockCommand) -> str | None:
    """The warehouse where ``command`` may create the SKU's row, if any."""
    if isinstance(command, UpdateStock) and command.operation is not StockOperation.SUBTRACT:
        return command.warehouse_id
    if isinstance(command, TransferStock):
        return command.to_warehouse
    return None
