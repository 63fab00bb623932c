"""The invariant check (``inventory check``): what must hold in the ledger at any moment.

- every stock row: ``total = available + reserved`` and nothing negative;
- ``reserved`` equals the sum of the stock's PENDING reservations;
- replaying a stock's movements from zero gives every recorded step and its current figures;
- every order's ledger state agrees with its reservations.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from db import invariants as sql
from service import metrics
from service.domain.values import Levels

_REPLAY = {
    "RESERVE": lambda lv, q: Levels(lv.available - q, lv.reserved + q, lv.total),
    "COMMIT": lambda lv, q: Levels(lv.available, lv.reserved - q, lv.total - q),
    "RELEASE": lambda lv, q: Levels(lv.available + q, lv.reserved - q, lv.total),
    "EXPIRE": lambda lv, q: Levels(lv.available + q, lv.reserved - q, lv.total),
    "ADD": lambda lv, q: Levels(lv.available + q, lv.reserved, lv.total + q),
    "SUBTRACT": lambda lv, q: Levels(lv.available - q, lv.reserved, lv.total - q),
    "SET": lambda lv, q: Levels(q - lv.reserved, lv.reserved, q),
}


async def check(db: AsyncEngine) -> list[str]:
    """Every violation found, as a line a person can act on; empty when all holds."""
    problems: list[str] = []
    async with db.connect() as conn:
        for row in await conn.execute(sql.BROKEN_LEVELS):
            problems.append(
                f"stock {row.id} ({row.product_id}:{row.variant_id}@{row.warehouse_id}): "
                f"available {row.available} + reserved {row.reserved} != total {row.total}"
            )
        for row in await conn.execute(sql.RESERVED_MISMATCH):
            problems.append(
                f"stock {row.id}: reserved {row.reserved} but pending reservations sum to "
                f"{row.pending}"
            )
        current = {
            str(r.id): Levels(r.available, r.reserved, r.total)
            for r in await conn.execute(sql.CURRENT_LEVELS)
        }
        replayed: dict[str, Levels] = {}
        for m in await conn.execute(sql.MOVEMENTS):
            stock_id = str(m.stock_id)
            before = replayed.get(stock_id, Levels(0, 0, 0))
            step = _REPLAY.get(m.operation)
            after = Levels(m.available_after, m.reserved_after, m.total_after)
            if step is None or step(before, m.quantity) != after:
                problems.append(
                    f"stock {stock_id}: movement {m.operation} {m.quantity} from {before} "
                    f"records {after}"
                )
            replayed[stock_id] = after
        for stock_id, levels in current.items():
            if replayed.get(stock_id, Levels(0, 0, 0)) != levels:
                problems.append(
                    f"stock {stock_id}: movements replay to {replayed.get(stock_id)}, "
                    f"stock is at {levels}"
                )
        for row in await conn.execute(sql.LEDGER_MISMATCH):
            problems.append(
                f"order {row.order_id} is {row.state} with {row.pending} pending and "
                f"{row.committed} committed reservations"
            )
        for row in await conn.execute(sql.ORPHAN_RESERVATIONS):
            problems.append(f"reservation {row.id} is pending for unknown order {row.order_id}")
    metrics.INVARIANT_VIOLATIONS.set(len(problems))
    return problems
