"""The invariant check (``inventory check``): what must hold in the ledger at any moment.

- every stock row: ``total = available + reserved``, ``reserved`` not negative, and
  ``available`` not below ``-backorder_limit`` (below zero only by backordered units);
- ``reserved`` equals the sum of the stock's PENDING reservations;
- ``backordered`` equals the sum of ``backordered`` over the stock's PENDING and COMMITTED
  reservations, and covers what the row is below zero: ``max(0, -available) <= backordered``;
- replaying a stock's movements from zero gives every recorded step and its current figures;
- every order's ledger state agrees with its reservations;
- every stock alert still in the outbox was written with a movement of its stock (the change
  that crossed the threshold), in the same transaction.

``check`` runs all of it (the CLI, the tests); ``find_all`` and ``find_changed`` are the full
and the bounded pass of the service's live check (``service/invariant_monitor.py``). Each
runs on the caller's connection, whose one snapshot keeps concurrent writes from looking
like damage (REPEATABLE READ).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import invariant_sql as sql
from db.session import snapshot
from service import metrics
from service.domain.values import Levels

_REPLAY: dict[str, Callable[[Levels, int], Levels]] = {
    "RESERVE": lambda lv, q: Levels(lv.available - q, lv.reserved + q, lv.total),
    "COMMIT": lambda lv, q: Levels(lv.available, lv.reserved - q, lv.total - q),
    "RELEASE": lambda lv, q: Levels(lv.available + q, lv.reserved - q, lv.total),
    "EXPIRE": lambda lv, q: Levels(lv.available + q, lv.reserved - q, lv.total),
    "ADD": lambda lv, q: Levels(lv.available + q, lv.reserved, lv.total + q),
    "SUBTRACT": lambda lv, q: Levels(lv.available - q, lv.reserved, lv.total - q),
    "SET": lambda lv, q: Levels(q - lv.reserved, lv.reserved, q),
    "POLICY": lambda lv, q: lv,  # SetStockPolicy: recorded, but no level changes
    "TRANSFER_OUT": lambda lv, q: Levels(lv.available - q, lv.reserved, lv.total - q),
    "TRANSFER_IN": lambda lv, q: Levels(lv.available + q, lv.reserved, lv.total + q),
    "RETURN": lambda lv, q: Levels(lv.available + q, lv.reserved, lv.total + q),
    "RETURN_DAMAGED": lambda lv, q: lv,  # recorded: damaged units do not come back as stock
}
NOTHING = Levels(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Problem:
    """One violation: ``subject`` is the stock or order a later pass re-checks."""

    subject: str
    text: str

    def __str__(self) -> str:
        return self.text


async def check(db: AsyncEngine, *, whole_history: bool = True) -> list[str]:
    """Every violation found, as a line a person can act on; empty when all holds.

    ``whole_history`` False (a movement retention is set): each stock's replay starts from
    its oldest retained movement's figures, a stock with none retained is not replayed, and
    stock alerts are not matched with their movements (which may be pruned first).
    """
    async with snapshot(db) as conn:
        problems = await find_all(conn, whole_history=whole_history)
    metrics.INVARIANT_VIOLATIONS.set(len(problems))
    return [problem.text for problem in problems]


async def find_all(conn: AsyncConnection, *, whole_history: bool = True) -> list[Problem]:
    """The full pass: every stock, its (retained) movement history, every order."""
    problems = [
        *_levels(await conn.execute(sql.BROKEN_LEVELS)),
        *_pending(await conn.execute(sql.RESERVED_MISMATCH)),
        *_backordered(await conn.execute(sql.BACKORDERED_MISMATCH)),
        *_deficit(await conn.execute(sql.UNBACKED_DEFICIT)),
    ]
    current = {
        str(r.id): Levels(r.available, r.reserved, r.total)
        for r in await conn.execute(sql.CURRENT_LEVELS)
    }
    movements = await conn.stream(sql.MOVEMENTS)
    if whole_history:
        problems += await _replay(movements, current, from_start=True)
    else:
        problems += await _replay(movements, current, from_start=False, unrecorded_ok=True)
    for row in await conn.execute(sql.LEDGER_MISMATCH):
        problems.append(
            Problem(
                f"order {row.order_id}",
                f"order {row.order_id} is {row.state} with {row.pending} pending and "
                f"{row.committed} committed reservations",
            )
        )
    # an alert's movement may be pruned before the alert leaves the outbox: with a movement
    # retention the alerts are not matched
    alerts: Any = await conn.execute(sql.UNEXPLAINED_ALERTS) if whole_history else []
    for row in alerts:
        where = row.warehouse_id or "every active warehouse"
        problems.append(
            Problem(
                f"alert {row.id}",
                f"stock alert {row.id} ({row.alert} for {row.product_id} in {where}) has no "
                "movement of that stock in the transaction that wrote it",
            )
        )
    for row in await conn.execute(sql.ORPHAN_RESERVATIONS):
        problems.append(
            Problem(
                f"order {row.order_id}",
                f"reservation {row.id} is pending for unknown order {row.order_id}",
            )
        )
    return problems


async def find_changed(
    conn: AsyncConnection, within: int, steps: int
) -> tuple[set[str], list[Problem]]:
    """The bounded pass: the stock rows written by the last ``within`` transactions, each
    against its open reservations and its last ``steps`` movements. Returns the subjects
    checked and what is wrong with them."""
    changed = (await conn.execute(sql.CHANGED_STOCKS, {"within": within})).all()
    problems = [
        *_levels([row for row in changed if _level_faults(row)]),
        *_pending([row for row in changed if row.reserved != row.pending]),
        *_backordered([row for row in changed if row.backordered != row.lines]),
        *_deficit([row for row in changed if max(0, -row.available) > row.backordered]),
    ]
    current = {str(r.id): Levels(r.available, r.reserved, r.total) for r in changed}
    movements = await conn.stream(sql.RECENT_MOVEMENTS, {"within": within, "steps": steps})
    problems += await _replay(movements, current, from_start=False)
    return {f"stock {stock_id}" for stock_id in current}, problems


def _level_faults(row: Any) -> list[str]:
    """What is wrong with a row's figures (BROKEN_LEVELS's conditions, each said)."""
    faults = []
    if row.total != row.available + row.reserved:
        faults.append(f"available {row.available} + reserved {row.reserved} != total {row.total}")
    if row.available < -row.backorder_limit:
        faults.append(
            f"available {row.available} is below -backorder_limit (-{row.backorder_limit})"
        )
    if row.reserved < 0:
        faults.append(f"reserved {row.reserved} is negative")
    return faults


def _name(row: Any) -> str:
    return f"stock {row.id} ({row.product_id}:{row.variant_id}@{row.warehouse_id})"


def _levels(rows: Iterable[Any]) -> list[Problem]:
    return [
        Problem(f"stock {row.id}", f"{_name(row)}: {'; '.join(_level_faults(row))}") for row in rows
    ]


def _pending(rows: Iterable[Any]) -> list[Problem]:
    return [
        Problem(
            f"stock {row.id}",
            f"stock {row.id}: reserved {row.reserved} but pending reservations sum to "
            f"{row.pending}",
        )
        for row in rows
    ]


def _backordered(rows: Iterable[Any]) -> list[Problem]:
    return [
        Problem(
            f"stock {row.id}",
            f"{_name(row)}: backordered {row.backordered} but its open reservations' "
            f"backordered units sum to {row.lines}",
        )
        for row in rows
    ]


def _deficit(rows: Iterable[Any]) -> list[Problem]:
    return [
        Problem(
            f"stock {row.id}",
            f"{_name(row)}: available {row.available} is {-row.available} below zero, "
            f"more than its {row.backordered} backordered units",
        )
        for row in rows
    ]


async def _replay(
    movements: Any, current: dict[str, Levels], *, from_start: bool, unrecorded_ok: bool = False
) -> list[Problem]:
    """Each movement must step from the one before; the last must give the current figures.

    ``from_start``: the movements are a stock's whole history, replayed from zero; else its
    latest ones, the first of which is taken as given. ``unrecorded_ok``: a stock without a
    movement (all pruned by retention) is not compared.
    """
    problems: list[Problem] = []
    replayed: dict[str, Levels] = {}
    async for m in movements:
        stock_id = str(m.stock_id)
        after = Levels(m.available_after, m.reserved_after, m.total_after)
        before = replayed.get(stock_id, NOTHING if from_start else None)
        step = _REPLAY.get(m.operation)
        if step is None or (before is not None and step(before, m.quantity) != after):
            problems.append(
                Problem(
                    f"stock {stock_id}",
                    f"stock {stock_id}: movement {m.operation} {m.quantity} from {before} "
                    f"records {after}",
                )
            )
        replayed[stock_id] = after
    for stock_id, levels in current.items():
        if unrecorded_ok and stock_id not in replayed:
            continue
        if replayed.get(stock_id, NOTHING) != levels:
            problems.append(
                Problem(
                    f"stock {stock_id}",
                    f"stock {stock_id}: movements replay to {replayed.get(stock_id)}, "
                    f"stock is at {levels}",
                )
            )
    return problems
