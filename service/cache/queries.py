"""GetStock, CheckStock and BulkCheckStock read through the Redis cache (cache-aside).

``CachedStockQueries`` is a ``StockQueries`` whose one source of rows, ``_levels``, looks in
Redis first: all SKUs of a call in one round trip; the misses in one PostgreSQL query, then
written back through the versioned script (so a fill never overwrites a newer event). Every
answer is computed by the same ``StockQueries`` code from the same rows, cached or not: a
cached row is rebuilt whole (``codec.parse_line``: levels, policy, backordered), so what is
sellable is computed alike; a row the codec cannot read is a miss.
Redis down, slow or behind an open breaker: the rows come from PostgreSQL (``fallback``).

Stock-changed events carry neither a warehouse's priority (the order of GetStock's answer) nor
whether it is active (CheckStock counts active warehouses only), so a small directory of
warehouses is kept in memory, re-read every ``WAREHOUSE_REFRESH_S``; a cached row of a
warehouse it does not know is a miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncEngine

from db.ledger import load_warehouses
from service import metrics
from service.cache.codec import CachedSku, parse_line
from service.cache.store import CacheUnavailable, StockCache
from service.config import Settings
from service.domain.results import StockLevel
from service.domain.snapshot import Warehouse
from service.domain.values import Sku
from service.queries import StockQueries

log = logging.getLogger(__name__)

WAREHOUSE_REFRESH_S = 30.0
UNKNOWN_WAREHOUSE_REFRESH_S = 1.0  # at most this often when a cached row names a new one
MEMO_SIZE = 20_000

Rows: TypeAlias = list[tuple[StockLevel, bool]]

_HIT = metrics.CACHE_REQUESTS.labels("hit")
_MISS = metrics.CACHE_REQUESTS.labels("miss")
_FALLBACK = metrics.CACHE_REQUESTS.labels("fallback")


class WarehouseDirectory:
    """Priority and active flag of every warehouse, from PostgreSQL, kept in memory."""

    def __init__(
        self,
        db: AsyncEngine,
        *,
        refresh_s: float = WAREHOUSE_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._refresh_s = refresh_s
        self._clock = clock
        self._warehouses: dict[str, Warehouse] | None = None
        self._loaded_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    async def get(self) -> Mapping[str, Warehouse] | None:
        """The directory (refreshed in the background when old); None if never loaded."""
        if self._warehouses is None:
            self._refresh_soon()
            assert self._refreshing is not None
            await asyncio.shield(self._refreshing)  # one load for all the first callers
        elif self._clock() - self._loaded_at >= self._refresh_s:
            self._refresh_soon()
        return self._warehouses

    def unknown_warehouse(self) -> None:
        if self._clock() - self._loaded_at >= UNKNOWN_WAREHOUSE_REFRESH_S:
            self._refresh_soon()

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._load(), name="warehouse-directory")

    async def _load(self) -> None:
        try:
            async with self._db.connect() as conn:
                self._warehouses = await load_warehouses(conn)
            self._loaded_at = self._clock()
        except Exception as error:  # the database is down: keep what we had
            log.warning("could not load the warehouses: %s", type(error).__name__)
            self._loaded_at = self._clock() - self._refresh_s + UNKNOWN_WAREHOUSE_REFRESH_S


class CachedStockQueries(StockQueries):
    def __init__(
        self,
        db: AsyncEngine,
        cache: StockCache,
        *,
        allow_split: bool = True,
        directory: WarehouseDirectory | None = None,
    ) -> None:
        super().__init__(db, allow_split=allow_split)
        self.cache = cache
        self.directory = directory or WarehouseDirectory(db)
        # Rows built from an aggregate's exact text, for the directory they were built with:
        # a pure memo (the text holds the versions), so a hot SKU is parsed once per change.
        self._memo: dict[tuple[Sku, tuple[str, ...]], Rows] = {}
        self._memo_directory: Mapping[str, Warehouse] | None = None

    async def _levels(self, skus: Iterable[Sku]) -> dict[Sku, Rows]:
        wanted = list(dict.fromkeys(skus))
        if not wanted:
            return {}
        try:
            cached = await self.cache.read(wanted)
        except CacheUnavailable:
            _FALLBACK.inc(len(wanted))
            return await super()._levels(wanted)
        warehouses = await self.directory.get()
        found: dict[Sku, Rows] = {}
        misses: list[Sku] = []
        for sku, entry in zip(wanted, cached, strict=True):
            rows = self._usable(sku, entry, warehouses)
            if rows is None:
                misses.append(sku)
            else:
                found[sku] = rows
        if found:
            _HIT.inc(len(found))
        if misses:
            _MISS.inc(len(misses))
            loaded = await super()._levels(misses)
            await self.cache.fill({sku: [lv for lv, _ in rows] for sku, rows in loaded.items()})
            found.update(loaded)
        return found

    def _usable(
        self, sku: Sku, entry: CachedSku | None, warehouses: Mapping[str, Warehouse] | None
    ) -> Rows | None:
        """The rows of a complete aggregate in PostgreSQL's order, or None (a miss)."""
        if entry is None or not entry.complete or warehouses is None:
            return None
        if warehouses is not self._memo_directory or len(self._memo) >= MEMO_SIZE:
            self._memo = {}
            self._memo_directory = warehouses
        key = (sku, entry.lines)
        rows = self._memo.get(key)
        if rows is None:
            rows = self._build_rows(sku, entry, warehouses)
            if rows is None:
                return None
            self._memo[key] = rows
        return list(rows)

    def _build_rows(
        self, sku: Sku, entry: CachedSku, warehouses: Mapping[str, Warehouse]
    ) -> Rows | None:
        ranked: list[tuple[int, str, StockLevel, bool]] = []
        for line in entry.lines:
            level = parse_line(sku, line)
            if level is None:  # not this format: read PostgreSQL, whose fill rewrites it
                return None
            warehouse_id = level.warehouse_id
            warehouse = warehouses.get(warehouse_id)
            if warehouse is None:
                self.directory.unknown_warehouse()
                return None
            if not level.stock_id:  # a row created after the fill; its event has no stock id
                return None
            ranked.append((warehouse.priority, warehouse_id, level, warehouse.active))
        ranked.sort(key=_by_priority)
        return [(level, active) for _, _, level, active in ranked]


_by_priority = itemgetter(0, 1)  # PostgreSQL's order: warehouse priority, then id


def build_queries(settings: Settings, db: AsyncEngine, cache: StockCache | None) -> StockQueries:
    """Reads through the cache when it is enabled, else straight from PostgreSQL."""
    queries: StockQueries
    if cache is None or not settings.cache_enabled:
        queries = StockQueries(db, allow_split=settings.allow_split)
    else:
        queries = CachedStockQueries(db, cache, allow_split=settings.allow_split)
    queries.movement_retention = settings.movement_retention
    return queries
