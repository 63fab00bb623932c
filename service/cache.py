"""The Redis read cache of stock levels (docs/cache.md): keys, the versioned write script, reads.

Keys (ids are escaped, see ``_part``; the SKU in braces is a Redis Cluster hash tag, so one
SKU's keys share a slot and one script may touch them all):

- ``inv:stock:{<product>[:<variant>]}:<warehouse>``: one stock row, a hash of ``available``,
  ``reserved``, ``total``, ``version``, ``stock_id`` and ``at`` (commit time, epoch seconds).
- ``inv:sku:{<product>[:<variant>]}``: the SKU across warehouses, a hash with one field
  ``w:<warehouse>`` = ``available|reserved|total|version|stock_id`` per warehouse, the sums
  ``available``, ``reserved``, ``total``, ``version`` (sum of the rows' versions) recomputed by
  the script, and ``complete`` = ``1`` once a read of PostgreSQL filled it.

Every write goes through ONE Lua script (``VERSIONED_WRITE``, loaded once, called by EVALSHA,
reloaded on NOSCRIPT) that keeps, per row, the newest of what it is given and what is stored:
a version not newer than the stored one changes nothing, so redelivered, reordered or late
writes (a stock-changed event, a fill from PostgreSQL) never regress the cache.

Only a fill from PostgreSQL (which read every row of the SKU) marks the aggregate complete; a
stock-changed event for a SKU not cached yet starts an incomplete aggregate, which readers
treat as a miss. Readers use an aggregate only when it is complete, so a SKU's set of
warehouses is never answered from a partial picture. A complete aggregate with no warehouse
is the cached "unknown SKU"; a stock created later reaches it through its stock-changed event.

TTL: a key gets ``cache_ttl_seconds`` when it is created and an aggregate again on each fill;
events never extend it, so every aggregate is re-read from PostgreSQL at least once per TTL
and a lost event cannot keep a hot SKU wrong for longer than that.

Redis being down or slow costs latency, never errors: every call is bounded by
``cache_timeout_ms`` and goes through a circuit breaker; callers get ``CacheUnavailable`` and
read PostgreSQL. Writes that cannot be applied are kept (the newest state per row, bounded)
and replayed when Redis answers again; the script makes the replay order-free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
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
from redis.exceptions import NoScriptError, RedisError

from service import metrics
from service.cache_breaker import BreakerState, CircuitBreaker
from service.cache_near import NearCache
from service.config import Settings
from service.domain.results import StockLevel
from service.domain.values import Sku

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_NEAR_HIT = metrics.CACHE_NEAR_READS.labels("hit")
_NEAR_MISS = metrics.CACHE_NEAR_READS.labels("miss")

MAX_PENDING = 50_000  # stock rows whose newest state waits for Redis to come back
FIELDS_PER_ROW = 7

VERSIONED_WRITE = """
-- Versioned write of rows of ONE SKU into their stock hashes and the SKU aggregate.
-- KEYS[1]: the SKU aggregate; KEYS[1 + i]: the stock hash of row i.
-- ARGV[1]: TTL in seconds; ARGV[2]: '1' when the rows are a complete read of the SKU from
-- PostgreSQL (a fill: the aggregate becomes complete), '0' for stock-changed events.
-- Then 7 values per row: warehouse, available, reserved, total, version, stock_id, at.
-- Returns one flag per row: 1 if the row was newer than what the cache held, else 0.
local agg = KEYS[1]
local ttl = tonumber(ARGV[1])
local fill = ARGV[2] == '1'
local agg_existed = redis.call('EXISTS', agg) == 1
local rows = (#ARGV - 2) / 7
local applied = {}
local changed = false

local function unpack_field(packed)
  local a, r, t, v, s = string.match(packed, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return a, r, t, tonumber(v), s
end

for i = 1, rows do
  local o = 2 + (i - 1) * 7
  local wh = ARGV[o + 1]
  local field = 'w:' .. wh
  local skey = KEYS[1 + i]
  local sid = ARGV[o + 6]
  -- the newest state stored, in the aggregate's field or in the stock hash
  local sa, sr, st, sv, sat = nil, nil, nil, -1, ''
  local packed = redis.call('HGET', agg, field)
  if packed then
    local ps
    sa, sr, st, sv, ps = unpack_field(packed)
    if sid == '' then sid = ps end
  end
  local h = redis.call('HMGET', skey, 'available', 'reserved', 'total', 'version', 'stock_id', 'at')
  if h[4] then
    local hv = tonumber(h[4])
    if hv > sv then sa, sr, st, sv, sat = h[1], h[2], h[3], hv, h[6] or '' end
    if sid == '' and h[5] then sid = h[5] end
  end
  -- the given row wins only when strictly newer
  local v = tonumber(ARGV[o + 5])
  if v > sv then
    sa, sr, st, sv, sat = ARGV[o + 2], ARGV[o + 3], ARGV[o + 4], v, ARGV[o + 7]
    applied[i] = 1
  else
    applied[i] = 0
  end
  local svs = string.format('%d', sv)
  local newpacked = sa .. '|' .. sr .. '|' .. st .. '|' .. svs .. '|' .. sid
  if packed ~= newpacked then
    redis.call('HSET', agg, field, newpacked)
    changed = true
  end
  if (not h[4]) or tonumber(h[4]) ~= sv or (h[5] or '') ~= sid then
    redis.call('HSET', skey, 'available', sa, 'reserved', sr, 'total', st, 'version', svs,
      'stock_id', sid, 'at', sat)
    if not h[4] then redis.call('EXPIRE', skey, ttl) end
  end
end

if fill then
  redis.call('HSET', agg, 'complete', '1')
  changed = true
end
if changed then
  local all = redis.call('HGETALL', agg)
  local ta, tr, tt, tv = 0, 0, 0, 0
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 2) == 'w:' then
      local a, r, t, v = unpack_field(all[j + 1])
      ta, tr, tt, tv = ta + tonumber(a), tr + tonumber(r), tt + tonumber(t), tv + v
    end
  end
  redis.call('HSET', agg, 'available', string.format('%d', ta), 'reserved',
    string.format('%d', tr), 'total', string.format('%d', tt), 'version', string.format('%d', tv))
  if fill or not agg_existed then redis.call('EXPIRE', agg, ttl) end
end
return applied
"""
VERSIONED_WRITE_SHA = hashlib.sha1(VERSIONED_WRITE.encode()).hexdigest()

MULTI_READ = """
-- The SKU aggregates KEYS in one call, each as one string ('' when absent): '1' if complete
-- else '0', then per warehouse a line 'available|reserved|total|version|stock_id|warehouse'
-- (ids are printable, so a newline cannot occur in them).
local out = {}
for i = 1, #KEYS do
  local all = redis.call('HGETALL', KEYS[i])
  if #all == 0 then
    out[i] = ''
  else
    local parts = {'0'}
    for j = 1, #all, 2 do
      local name = all[j]
      if string.sub(name, 1, 2) == 'w:' then
        parts[#parts + 1] = all[j + 1] .. '|' .. string.sub(name, 3)
      elseif name == 'complete' and all[j + 1] == '1' then
        parts[1] = '1'
      end
    end
    out[i] = table.concat(parts, '\\n')
  end
end
return out
"""
MULTI_READ_SHA = hashlib.sha1(MULTI_READ.encode()).hexdigest()
MAX_KEYS_PER_READ = 1_000


_SHAS = {VERSIONED_WRITE: VERSIONED_WRITE_SHA, MULTI_READ: MULTI_READ_SHA}


class CacheUnavailable(Exception):
    """Redis did not answer in time, failed, or the breaker is open: read PostgreSQL."""


# -- keys --


def _part(value: str) -> str:
    """Escape the characters that delimit keys and hash tags, so ids can never collide."""
    if "%" in value or ":" in value or "{" in value or "}" in value:
        value = value.replace("%", "%25").replace(":", "%3A")
        value = value.replace("{", "%7B").replace("}", "%7D")
    return value


def _tag(sku: Sku) -> str:
    product = _part(sku.product_id)
    return product if sku.variant_id is None else f"{product}:{_part(sku.variant_id)}"


SKU_KEY_PREFIX = "inv:sku:"


def sku_key(sku: Sku) -> str:
    return SKU_KEY_PREFIX + "{" + _tag(sku) + "}"


def stock_key(sku: Sku, warehouse_id: str) -> str:
    return "inv:stock:{" + _tag(sku) + "}:" + _part(warehouse_id)


# -- values --


@dataclass(frozen=True, slots=True)
class StockState:
    """The absolute state of one stock row at a version: what stock-changed carries."""

    sku: Sku
    warehouse_id: str
    available: int
    reserved: int
    total: int
    version: int
    stock_id: str = ""
    at: float | None = None  # commit time (epoch seconds), for the propagation metric

    @classmethod
    def from_level(cls, level: StockLevel) -> StockState:
        return cls(
            level.sku,
            level.warehouse_id,
            level.available,
            level.reserved,
            level.total,
            level.version,
            level.stock_id,
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockState:
        """A stock-changed payload (service/domain/planner.py); ValueError when malformed."""
        try:
            variant = payload.get("variant_id") or None
            at = payload.get("at")
            return cls(
                Sku(_text(payload["product_id"]), None if variant is None else _text(variant)),
                _text(payload["warehouse_id"]),
                _count(payload["available"]),
                _count(payload["reserved"]),
                _count(payload["total"]),
                _count(payload["version"]),
                _text(payload["stock_id"]) if payload.get("stock_id") else "",
                datetime.fromisoformat(at).timestamp() if isinstance(at, str) else None,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a stock-changed payload: {error!r}") from error

    def args(self) -> list[str | int]:
        return [
            self.warehouse_id,
            self.available,
            self.reserved,
            self.total,
            self.version,
            self.stock_id,
            "" if self.at is None else repr(self.at),
        ]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CachedSku:
    """A SKU's aggregate as stored. Only a complete one may answer a read.

    ``lines`` are the rows as ``MULTI_READ`` sent them
    (``available|reserved|total|version|stock_id|warehouse``), parsed by the reader that
    needs them (``service/cache_queries.py`` builds its answer straight from them).
    """

    complete: bool
    lines: tuple[str, ...]

    @classmethod
    def parse(cls, blob: str) -> CachedSku | None:
        """From one string of ``MULTI_READ``; None when the SKU is not cached."""
        if not blob:
            return None
        head, *lines = blob.split("\n")
        return cls(head == "1", tuple(lines))


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


# -- the cache --


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

        Copies kept by the near cache answer first (see service/cache_near.py); the rest come
        from Redis in one round trip. With no read in flight the caller reads at once. Reads
        that arrive while one is in flight wait and go out together in the next call (one
        EVALSHA of ``MULTI_READ`` for all their keys): under load the cost of a Redis call is
        shared, as the engine shares a commit.
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
                replies = await self._call(functools.partial(self._evalsha, MULTI_READ, keys))
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
            replies = await self._call(functools.partial(self._evalsha, MULTI_READ, wanted))
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

    async def _write(self, calls: Sequence[tuple[Sku, Sequence[StockState], bool]]) -> list[Any]:
        """One EVALSHA per SKU, pipelined: one round trip (two after a NOSCRIPT).

        The near cache drops the SKUs' copies before and after, so this process reads its own
        writes without waiting for Redis's invalidation message."""
        if self._near is not None:
            touched = [sku_key(sku) for sku, _, _ in calls]
            self._near.invalidate(touched)
            try:
                return await self._write_redis(calls)
            finally:
                self._near.invalidate(touched)
        return await self._write_redis(calls)

    async def _write_redis(
        self, calls: Sequence[tuple[Sku, Sequence[StockState], bool]]
    ) -> list[Any]:
        commands = [self._script_args(sku, rows, fill) for sku, rows, fill in calls]
        replies = await self._evalsha_pipeline(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self.client.script_load(VERSIONED_WRITE)  # Redis restarted or was flushed
            replies = await self._evalsha_pipeline(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _evalsha(self, script: str, keys: Sequence[str], *args: Any) -> Any:
        sha = _SHAS[script]
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(script)
            return await self.client.evalsha(sha, len(keys), *keys, *args)

    async def _evalsha_pipeline(self, commands: Sequence[list[Any]]) -> list[Any]:
        if len(commands) == 1:
            try:
                return [await self.client.evalsha(VERSIONED_WRITE_SHA, *commands[0])]
            except NoScriptError as error:
                return [error]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.evalsha(VERSIONED_WRITE_SHA, *command)
        return list(await pipe.execute(raise_on_error=False))

    def _script_args(self, sku: Sku, rows: Sequence[StockState], fill: bool) -> list[Any]:
        keys = [sku_key(sku), *(stock_key(sku, row.warehouse_id) for row in rows)]
        args: list[Any] = [self._ttl_s, "1" if fill else "0"]
        for row in rows:
            args.extend(row.args())
        return [len(keys), *keys, *args]

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
