"""The Redis read cache of stock levels (docs/cache.md): the names other layers use.

Inside: ``store`` (``StockCache``: reads, writes, breaker and replay; ``build_cache``),
``queries`` (GetStock and CheckStock read through the cache), ``warming`` (stock-changed values
from the warmer agent), ``scripts`` with ``lua/`` (the versioned write and the multi-read),
``keys``, ``codec``, ``near`` (process-local copies), ``breaker``.
"""

from service.cache.codec import StockState
from service.cache.keys import sku_key, stock_key
from service.cache.queries import CachedStockQueries, build_queries
from service.cache.store import CacheUnavailable, StockCache, WriteOutcome, build_cache
from service.cache.warming import warm_many

__all__ = [
    "CacheUnavailable",
    "CachedStockQueries",
    "StockCache",
    "StockState",
    "WriteOutcome",
    "build_cache",
    "build_queries",
    "sku_key",
    "stock_key",
    "warm_many",
]
