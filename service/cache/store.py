"""``StockCache``, the Redis read cache of stock levels (docs/cache.md), and ``build_cache``.

Reads answer from the near cache (near.py) first, the rest from Redis in one call of
``multi_read.lua``; reads that arrive while one is in flight go out together in the next.
Writes, of stock-changed events (``apply``) and of fills after a miss (``fill``), go through
``versioned_write.lua`` (scripts.py), which never lets an older version overwrite a newer one.

Redis being down or slow costs latency, never errors: every call is bounded by
``cache_timeout_ms`` and goes through a circuit breaker (breaker.py); callers get
``CacheUnavailable`` and read PostgreSQL. Writes that cannot be applied are kept (the newest
state per row, bounded) and replayed when Redis answers again; the script makes the replay
order-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service import metrics
from service.cache.breaker import BreakerState, CircuitBreaker
from service.cache.codec import CachedSku, StockState
from service.cache.keys import SKU_KEY_PREFIX, sku_key
from service.cache.near import NearCache
from service.cache.scripts import CacheScripts, SkuWrite
from service.config import Settings
from service.domain.results import StockLevel
from service.domain.snapshot import StockRow
from service.domain.values import Sku

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_NEAR_HIT = metrics.CACHE_NEAR_READS.labels("hit")
_NEAR_MISS = metrics.CACHE_NEAR_READS.labels("miss")

MAX_PENDING = 50_000  # stock rows whose newest state waits for Redis to come back
MAX_KEYS_PER_READ = 1_000


class CacheUnavailable(Exception):
    """Redis did not answer in time, failed, or the breaker is open: read PostgreSQL."""


@dataclass
class WriteOutcome:
    applied: int = 0
    stale: int = 0
    deferred: int = 0
    dropped: int = 0

    def count(self) -> None:
        for result in ("applied", "stale", "deferred", "dropped"):
            if amount := getattr(self, result):
                metrics.CACHE_WRITES.labels(result).inc(amount)


class StockCache:
    def __init__(
        self,
        client: Redis,
        *,
        ttl_s: int,
        timeout_s: float,
        breaker: CircuitBreaker,
        max_pending: int = MAX_PENDING,
        near: NearCache[CachedSku] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self._scripts = CacheScripts(client)
        self._near = near
        self.breaker = breaker
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._max_pending = max_pending
        self._clock = clock
        self._pending: dict[tuple[Sku, str], StockState] = {}
        self._replay: asyncio.Task[WriteOutcome] | None = None
        self._reads: deque[tuple[list[str], asyncio.Future[list[Any]]]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._reading = False  # a read is in flight: new ones wait and go out together

    async def close(self) -> None:
        if self._near is not None:
            await self._near.close()
        for task in (self._replay, self._reader):
            if task is not None and not task.done():
                task.cancel()
        await self.client.aclose()

    @property
    def pending(self) -> int:
        """Stock rows whose newest state could not be written yet."""
        return len(self._pending)

    # -- reads --

    async def read(self, skus: Sequence[Sku]) -> list[CachedSku | None]:
        """The aggregates of the SKUs; raises CacheUnavailable.

        Copies kept by the near cache answer first (see near.py); the rest come from Redis in
        one round trip. With no read in flight the caller reads at once. Reads that arrive
        while one is in flight wait and go out together in the next call (one call of
        ``multi_read.lua`` for all their keys): under load the cost of a Redis call is shared,
        as the engine shares a commit.
        """
        if self.breaker.state is BreakerState.OPEN:
            raise CacheUnavailable("circuit breaker open")
        keys = [sku_key(sku) for sku in skus]
        near = self._near
        if near is None or not near.live:
            if near is not None:
                near.start()
            return await self._read_redis(keys)
        found = [near.get(key) for key in keys]
        missing = [key for key, entry in zip(keys, found, strict=True) if entry is None]
        if missing:
            _NEAR_MISS.inc(len(missing))
        if len(missing) < len(keys):
            _NEAR_HIT.inc(len(keys) - len(missing))
        if not missing:
            return found
        generation = near.watch(missing)
        read: list[CachedSku | None] = []
        try:
            read = await self._read_redis(missing)
        finally:
            near.settle(generation, missing, read)
        fetched = dict(zip(missing, read, strict=True))
        return [
            fetched[key] if entry is None else entry for key, entry in zip(keys, found, strict=True)
        ]

    async def _read_redis(self, keys: list[str]) -> list[CachedSku | None]:
        if self._reading:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._reads.append((keys, future))
            replies = await future
        else:
            self._reading = True
            try:
                replies = await self._call(functools.partial(self._scripts.read, keys))
            finally:
                self._reading = False
                if self._reads:
                    self._reading = True
                    self._reader = asyncio.create_task(self._read_batches(), name="cache-reads")
        try:
            return [CachedSku.parse(reply) for reply in replies]
        except (ValueError, TypeError):
            log.warning("unreadable cache entry among %s; reading PostgreSQL", keys)
            raise CacheUnavailable("unreadable cache entry") from None

    async def _read_batches(self) -> None:
        """Serve the waiting reads, many per call, until none wait."""
        try:
            while self._reads:
                await self._read_batch()
        finally:
            self._reading = False

    async def _read_batch(self) -> None:
        batch: list[tuple[list[str], asyncio.Future[list[Any]]]] = []
        keys: dict[str, None] = {}
        while self._reads and (not batch or len(keys) < MAX_KEYS_PER_READ):
            request = self._reads.popleft()
            batch.append(request)
            keys.update(dict.fromkeys(request[0]))
        wanted = list(keys)
        try:
            replies = await self._call(functools.partial(self._scripts.read, wanted))
        except CacheUnavailable as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(CacheUnavailable(str(error)))
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        found = dict(zip(wanted, replies, strict=True))
        for request_keys, future in batch:
            if not future.done():
                future.set_result([found[key] for key in request_keys])

    # -- writes --

    async def fill(self, found: Mapping[Sku, Iterable[StockLevel]]) -> None:
        """Cache complete reads of SKUs from PostgreSQL; best effort, never raises."""
        calls = [
            (sku, [StockState.from_level(level) for level in levels], True)
            for sku, levels in found.items()
        ]
        if not calls:
            return
        with contextlib.suppress(CacheUnavailable):  # the next read misses again
            await self._call(lambda: self._write(calls))

    async def apply(self, states: Sequence[StockState]) -> WriteOutcome:
        """Write stock-changed states (never raises). What Redis cannot take now is kept and
        replayed when it answers again."""
        outcome = await self._apply(states)
        outcome.count()
        return outcome

    async def apply_rows(self, rows: Sequence[StockRow], at: datetime) -> WriteOutcome:
        """``apply`` for the rows a batch of this process's engine committed at ``at``."""
        moment = at.timestamp()
        return await self.apply([StockState.from_row(row, moment) for row in rows])

    async def apply_payloads(self, payloads: Sequence[Mapping[str, Any]]) -> WriteOutcome:
        """``apply`` for stock-changed payloads; malformed ones are counted and skipped."""
        states = []
        for payload in payloads:
            try:
                states.append(StockState.from_payload(payload))
            except ValueError as error:
                metrics.CACHE_WRITES.labels("invalid").inc()
                log.warning("skipping a malformed stock-changed payload: %s", error)
        return await self.apply(states)

    async def _apply(self, states: Sequence[StockState]) -> WriteOutcome:
        outcome = WriteOutcome()
        replayed = list(self._pending.values())
        self._pending = {}
        todo = [*replayed, *states]
        if not todo:
            return outcome
        by_sku: dict[Sku, list[StockState]] = {}
        for state in todo:
            by_sku.setdefault(state.sku, []).append(state)
        calls = [(sku, rows, False) for sku, rows in by_sku.items()]
        try:
            flags = await self._call(lambda: self._write(calls))
        except CacheUnavailable:
            for state in replayed:
                self._defer(state)  # already counted when first deferred
            for state in states:
                if self._defer(state):
                    outcome.deferred += 1
                else:
                    outcome.dropped += 1
            return outcome
        now = self._clock()
        for (_, rows, _), row_flags in zip(calls, flags, strict=True):
            for state, flag in zip(rows, row_flags, strict=True):
                if flag:
                    outcome.applied += 1
                    if state.at is not None:
                        metrics.CACHE_PROPAGATION.observe(max(now - state.at, 0.0))
                else:
                    outcome.stale += 1
        return outcome

    def _defer(self, state: StockState) -> bool:
        key = (state.sku, state.warehouse_id)
        kept = self._pending.get(key)
        if kept is None and len(self._pending) >= self._max_pending:
            return False
        if kept is None or state.version > kept.version:
            self._pending[key] = state
        return True

    async def _write(self, calls: Sequence[SkuWrite]) -> list[Any]:
        """``versioned_write.lua`` for every SKU of ``calls``, in one round trip.

        The near cache drops the SKUs' copies before and after, so this process reads its own
        writes without waiting for Redis's invalidation message."""
        if self._near is not None:
            touched = [sku_key(sku) for sku, _, _ in calls]
            self._near.invalidate(touched)
            try:
                return await self._scripts.write(calls, self._ttl_s)
            finally:
                self._near.invalidate(touched)
        return await self._scripts.write(calls, self._ttl_s)

    # -- every call: breaker, timeout, replay after recovery --

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        if not self.breaker.allow():
            raise CacheUnavailable("circuit breaker open")
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as error:
            self.breaker.failure()
            metrics.CACHE_REQUESTS.labels("error").inc()
            raise CacheUnavailable(f"redis: {type(error).__name__}") from error
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        self.breaker.success()
        if self._pending and (self._replay is None or self._replay.done()):
            self._replay = asyncio.create_task(self.apply(()), name="cache-replay")
        return result


def build_cache(settings: Settings) -> StockCache:
    """The cache and its Redis client; nothing connects until the first call."""
    timeout_s = settings.cache_timeout_ms / 1000
    client = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # the breaker decides when to try again, not the client
        health_check_interval=0,
    )
    near: NearCache[CachedSku] | None = None
    if settings.cache_near_max_entries > 0:
        near = NearCache(
            client,
            SKU_KEY_PREFIX,
            max_entries=settings.cache_near_max_entries,
            max_age_s=settings.cache_near_max_age_s,
        )
    return StockCache(
        client,
        ttl_s=settings.cache_ttl_seconds,
        timeout_s=timeout_s,
        breaker=CircuitBreaker(settings.cache_breaker_cooldown_s),
        near=near,
    )
