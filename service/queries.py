"""Reads: GetStock, CheckStock and BulkCheckStock, from PostgreSQL (the cache wraps this).

CheckStock and BulkCheckStock answer by sellable stock (``StockLevel.sellable``: available less
the safety stock); GetStock reports the levels as they are, policy and sellable included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from db.stock_reads import levels_of
from service.db_errors import Failure, classify
from service.domain.errors import NotFound, Unavailable
from service.domain.results import Availability, StockLevel, StockView
from service.domain.values import Item, Sku


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
        for attempt in (1, 2):  # the second try gets a fresh connection if the first died
            try:
                async with self._reads.connect() as conn:
                    return await levels_of(conn, wanted)
            except Exception as error:
                if classify(error) is Failure.BUG:
                    raise
                if attempt == 2:
                    raise Unavailable("database unavailable") from error
        raise AssertionError("unreachable")
