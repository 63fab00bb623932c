"""The composition root: builds everything from Settings and hands it down.

Nothing in the service connects at import time; ``build`` is the one place that does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from db.session import create_engine
from service.cache import StockCache, build_cache, build_queries
from service.config import Settings
from service.domain.validation import Limits
from service.engine import EngineConfig, ReservationEngine
from service.ledger_queries import LedgerQueries
from service.orders import OrderQueries
from service.pruner import ensure_partitions_at_start
from service.queries import StockQueries


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_items_per_order=settings.max_items_per_order,
        max_quantity_per_item=settings.max_quantity_per_item,
        max_id_length=settings.max_id_length,
        max_reason_length=settings.max_reason_length,
        max_message_bytes=settings.max_message_bytes,
        min_ttl_seconds=settings.min_ttl_seconds,
        default_ttl_seconds=settings.default_ttl_seconds,
        max_ttl_seconds=settings.max_ttl_seconds,
    )


@dataclass
class Container:
    settings: Settings
    db: AsyncEngine
    engine: ReservationEngine
    queries: StockQueries
    orders: OrderQueries  # GetOrder, from PostgreSQL (the cache holds stock levels only)
    ledger: LedgerQueries  # ListStock, ListMovements: pages from PostgreSQL, never the cache
    limits: Limits
    cache: StockCache | None = None


@asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[Container]:
    """Build the service's parts; on exit drain the engine, close Redis and the pool."""
    db = create_engine(settings.database())
    cache = build_cache(settings) if settings.cache_enabled else None
    engine = ReservationEngine(
        db,
        EngineConfig.from_settings(settings),
        on_stock_changed=cache.apply_rows if cache is not None else None,
    )
    await ensure_partitions_at_start(db, settings)
    await engine.start()
    try:
        yield Container(
            settings=settings,
            db=db,
            engine=engine,
            queries=build_queries(settings, db, cache),
            orders=OrderQueries(db),
            ledger=LedgerQueries(db),
            limits=limits_from(settings),
            cache=cache,
        )
    finally:
        await engine.stop()
        if cache is not None:
            await cache.close()
        await db.dispose()
