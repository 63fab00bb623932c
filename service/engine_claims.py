"""Which commands of a batch were already processed: their event id (order events) or
idempotency key (admin commands) claimed in ``processed_events`` in the batch's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from asyncpg import Connection

from db import ledger
from service.domain.commands import (
    Command,
    SetStockPolicy,
    StockCommand,
    TransferStock,
    UpdateStock,
)
from service.domain.errors import InventoryError

# processed_events' topic column for commands that come with an idempotency key, not a topic
ADMIN_TOPICS: dict[type, str] = {
    UpdateStock: "admin:update-stock",
    SetStockPolicy: "admin:set-stock-policy",
    TransferStock: "admin:transfer-stock",
}


def event_key(command: Command) -> tuple[str, str] | None:
    if isinstance(command, StockCommand):
        key = command.idempotency_key
        return (ADMIN_TOPICS[type(command)], key) if key else None
    if command.event_id is None:
        return None
    return (command.kind.value, command.event_id)


Keyed = dict[tuple[str, str], list[int]]


def events_to_claim(commands: list[Command]) -> tuple[Keyed, list[tuple[str, str, str | None]]]:
    """The batch's keys with the indices of the commands that carry each, and the
    (topic, event id, order id) rows to claim (``ledger.load_batch`` claims them)."""
    keyed: Keyed = {}
    owners: dict[tuple[str, str], str | None] = {}
    for index, command in enumerate(commands):
        key = event_key(command)
        if key is not None:
            keyed.setdefault(key, []).append(index)
            owners[key] = None if isinstance(command, StockCommand) else command.order_id
    return keyed, [(t, e, owners[(t, e)]) for t, e in keyed]


def duplicates_among(keyed: Keyed, fresh: set[tuple[str, str]]) -> frozenset[int]:
    """Indices of commands whose key was already processed (``fresh``: the keys claimed now)."""
    duplicate: set[int] = set()
    for key, indices in keyed.items():
        # a redelivery within the same batch: the first copy counts, the rest are duplicates
        duplicate.update(indices if key not in fresh else indices[1:])
    return frozenset(duplicate)


async def release_refused(
    conn: Connection,
    commands: list[Command],
    results: Sequence[object],
    duplicates: frozenset[int],
) -> None:
    """An admin command refused (a SUBTRACT below zero, an unknown warehouse) changed nothing:
    its idempotency key is not spent, so the same call may succeed later (an import run again
    after a restock). Order events stay claimed: a refusal is their outcome, published once."""
    refused = [
        key
        for index, (command, result) in enumerate(zip(commands, results, strict=True))
        if isinstance(command, StockCommand)
        and isinstance(result, InventoryError)
        and index not in duplicates
        and (key := event_key(command)) is not None
    ]
    await ledger.unclaim_events(conn, refused)
