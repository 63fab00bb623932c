"""Reads: GetStock, CheckStock and BulkCheckStock, from PostgreSQL (the cache wraps this).

CheckStock and BulkCheckStock answer by sellable stock (``StockLevel.sellable``: available less
the safety stock); GetStock reports the levels as they are, policy and sellable included.
GetStock ``as_of`` (``get_stock_as_of``) rebuilds past levels from the movement ledger, always
from PostgreSQL: it does not go through ``_levels``, the one read the cache replaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from db.stock_history import LevelsAt, levels_at
from db.stock_reads import levels_of
from service.db_errors import read_retrying_once
from service.domain.errors import InvalidArgument, NotFound
from service.domain.results import Availability, StockLevel, StockView
from service.domain.values import Item, Sku

# How far ``as_of`` may run ahead of the database's clock: a caller's "now" read from a clock
# slightly ahead of it is still now, not the future. Within it the answer is the present one,
# which transactions starting before the instant may still change.
AS_OF_CLOCK_SKEW = timedelta(seconds=1)


class StockQueries:
    def __init__(self, db: AsyncEngine, *, allow_split: bool = True) -> None:
        # one statement per read: no transaction, so no BEGIN and ROLLBACK round trips
        self._reads = db.execution_options(isolation_level="AUTOCOMMIT")
        self._allow_split = allow_split

    async def get_stock(self, sku: Sku, warehouse_id: str | None) -> StockView:
        rows = (await self._levels([sku]))[sku]
        levels = tuple(
            level for level, _ in rows if warehouse_id is None or level.warehouse_id == warehouse_id
        )
        if not levels:
            where = f" in {warehouse_id}" if warehouse_id else ""
            raise NotFound(f"no stock of {sku.key}{where}")
        return StockView.of(sku, levels)

    async def check_stock(self, items: Sequence[Item]) -> list[Availability]:
        found = await self._levels(item.sku for item in items)
        return [self._availability(item, found.get(item.sku, [])) for item in items]

    def _availability(self, item: Item, rows: list[tuple[StockLevel, bool]]) -> Availability:
        # by sellable stock: a row's safety stock is never promised, and a backordered row
        # (sellable below zero) counts as empty, not against another warehouse's stock
        usable = {
            level.warehouse_id: max(level.sellable, 0)
            for level, active in rows
            if active and (item.warehouse_id is None or level.warehouse_id == item.warehouse_id)
        }
        if not usable:
            return Availability(item.sku, item.quantity, 0, item.warehouse_id, known=bool(rows))
        # without splitting an order line must fit in one warehouse
        available = sum(usable.values()) if self._allow_split else max(usable.values())
        return Availability(item.sku, item.quantity, available, item.warehouse_id, True, usable)

    async def _levels(self, skus: Iterable[Sku]) -> dict[Sku, list[tuple[StockLevel, bool]]]:
        wanted = list(skus)
        return await read_retrying_once(self._reads, lambda conn: levels_of(conn, wanted))

    # -- as_of: the levels at a past instant, from the movement ledger --

    # With a movement retention, the pruner deletes movements older than it, each stock's last
    # one before the horizon excepted (db/prune_sql.py): every instant after the horizon is
    # answered as before, an earlier one is refused (below) rather than answered as if the
    # SKU had no stock then. None keeps every movement.
    movement_retention: timedelta | None = None

    @property
    def retained_since(self) -> datetime | None:
        """The oldest instant whose levels the ledger is sure to hold."""
        if self.movement_retention is None:
            return None
        return datetime.now(UTC) - self.movement_retention

    async def get_stock_as_of(self, sku: Sku, warehouse_id: str | None, at: datetime) -> StockView:
        """``sku``'s levels (per warehouse and total) at ``at``: the transactions that started
        at or before ``at``, as the movements recorded them; rows with no movement by then
        are left out (an empty view if none had one). Only the levels are rebuilt: the policy,
        ``backordered`` and ``version`` are not historical and stay at their defaults, so
        ``sellable`` equals ``available``. ``InvalidArgument`` (``as_of``) for an instant
        beyond the database's clock plus ``AS_OF_CLOCK_SKEW``, or before ``retained_since``;
        ``NotFound`` if the SKU has no stock row at all (in ``warehouse_id``), as GetStock."""
        since = self.retained_since
        if since is not None and at < since:
            raise InvalidArgument(
                "as_of",
                f"{at.isoformat()} is before {since.isoformat()}: movements older than the "
                "movement retention are pruned",
            )
        found = await self._levels_at(sku, warehouse_id, at)
        if found.future:
            raise InvalidArgument(
                "as_of",
                f"{at.isoformat()} is in the future (allowed: up to "
                f"{AS_OF_CLOCK_SKEW.total_seconds():g} s ahead of the database's clock)",
            )
        if not found.rows:
            where = f" in {warehouse_id}" if warehouse_id else ""
            raise NotFound(f"no stock of {sku.key}{where}")
        return StockView.of(sku, found.levels)

    async def _levels_at(self, sku: Sku, warehouse_id: str | None, at: datetime) -> LevelsAt:
        return await read_retrying_once(
            self._reads, lambda conn: levels_at(conn, sku, warehouse_id, at, AS_OF_CLOCK_SKEW)
        )
