"""ListStock and ListMovements: pages of stock rows and of the movement ledger, from PostgreSQL.

Never the cache (it holds levels by SKU, not listings). Each page is one statement on a
connection of its own, with no transaction, so it sees the rows committed when it runs: a
listing paged while the stock changes shows each row as it was when its page was read, and,
since every page continues after a key that never changes (``service/domain/listing.py``,
``db/stock_lists.py``), each row that exists throughout exactly once (docs/architecture.md,
"Queries and pagination").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import stock_lists
from service.db_errors import read_retrying_once
from service.domain.listing import (
    MovementListing,
    StockKey,
    StockListing,
    movement_token,
    stock_token,
)
from service.domain.results import MovementView, Page, StockLevel

R = TypeVar("R")


class LedgerQueries:
    def __init__(self, db: AsyncEngine, *, scan_budget: int = stock_lists.SCAN_BUDGET) -> None:
        # one statement per page: no transaction, so no BEGIN and ROLLBACK round trips
        self._reads = db.execution_options(isolation_level="AUTOCOMMIT")
        self._budget = scan_budget

    async def list_stock(self, listing: StockListing) -> Page[StockLevel, str]:
        """A page of stock rows; ``next`` is the next page's token, None on the last page."""
        found = listing.filter

        async def read(conn: AsyncConnection) -> Page[StockLevel, StockKey]:
            return await stock_lists.list_stock(
                conn,
                warehouse_id=found.warehouse_id,
                product_id_prefix=found.product_id_prefix,
                below_reorder_point=found.below_reorder_point,
                out_of_stock=found.out_of_stock,
                backordered=found.backordered,
                after=listing.after,
                page_size=listing.page_size,
                budget=self._budget,
            )

        page = await self._read(read)
        token = stock_token(found, page.next) if page.next is not None else None
        return Page(page.items, token)

    async def list_movements(self, listing: MovementListing) -> Page[MovementView, str]:
        """A page of movements; ``next`` is the next page's token, None on the last page."""
        found = listing.filter

        async def read(conn: AsyncConnection) -> Page[MovementView, int]:
            return await stock_lists.list_movements(
                conn,
                product_id=found.product_id,
                variant_id=found.variant_id,
                warehouse_id=found.warehouse_id,
                order_id=found.order_id,
                operation=found.operation,
                since=found.since,
                until=found.until,
                newest_first=found.newest_first,
                after=listing.after,
                page_size=listing.page_size,
                budget=self._budget,
            )

        page = await self._read(read)
        token = movement_token(found, page.next) if page.next is not None else None
        return Page(page.items, token)

    async def _read(self, read: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        return await read_retrying_once(self._reads, read)
