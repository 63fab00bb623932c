"""Process-local copies of Redis's SKU aggregates, dropped the moment Redis says they changed.

A cached GetStock spent about half its time on the Redis round trip (a syscall each way and a
wake-up of the Redis process, on machines where client, server and Redis share two cores).
Redis's server-assisted client-side caching removes it: ``CLIENT TRACKING ... BCAST PREFIX
inv:sku:`` makes Redis publish the name of every aggregate key that changes (written, expired,
evicted, deleted; ``null`` for a flush) on ``__redis__:invalidate``, and this process drops
its copy when the name arrives. An answer from a copy is as fresh as Redis was a moment ago:
the delay is one pub/sub message, well inside the propagation delay that cached reads already
document.

Two RESP2 connections (redis-py's RESP3 parser hands pub/sub pushes to callbacks, not
to the reader): the *listener* subscribes to the invalidation channel, the
*tracker* turns tracking on with ``REDIRECT <listener id>`` and is pinged every second (Redis
stops tracking when it closes). Copies are used only while both are up; any failure clears
them and the reads go to Redis (then PostgreSQL) until the pair is back.

A read that was in flight when its key was invalidated may carry the old value: ``watch`` /
``settle`` bracket every read from Redis, and a key invalidated in between is not copied.
Writes of this process drop its copies before and after they reach Redis, so a process reads
its own writes. Copies are also bounded in age (``max_age_s``) and number (``max_entries``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from service import metrics

log = logging.getLogger(__name__)

V = TypeVar("V")

INVALIDATION_CHANNEL = "__redis__:invalidate"
PING_INTERVAL_S = 1.0
RECONNECT_DELAY_S = 1.0
MAX_RECONNECT_DELAY_S = 10.0


class NearCache(Generic[V]):
    """Copies of values of keys under ``prefix``; usable while ``live``."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        *,
        max_entries: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._clock = clock
        self._copies: dict[str, tuple[V, float]] = {}
        self._in_flight: dict[str, int] = {}
        self._invalidated_in_flight: set[str] = set()
        self._generation = 0  # bumped whenever every copy is dropped
        self._live = False
        self._task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self._live

    def __len__(self) -> int:
        return len(self._copies)

    # -- reads --

    def get(self, key: str) -> V | None:
        copy = self._copies.get(key)
        if copy is None:
            return None
        value, stored_at = copy
        if self._clock() - stored_at > self._max_age_s:
            del self._copies[key]
            return None
        return value

    def watch(self, keys: Iterable[str]) -> int:
        """Call before reading ``keys`` from Redis; hand the result to ``settle``."""
        for key in keys:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return self._generation

    def settle(self, generation: int, keys: Sequence[str], values: Sequence[V | None]) -> None:
        """After the read: copy what no invalidation overtook (``values`` may be empty: failed)."""
        keep = self._live and generation == self._generation
        now = self._clock()
        for index, key in enumerate(keys):
            left = self._in_flight[key] - 1
            overtaken = key in self._invalidated_in_flight
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]
                self._invalidated_in_flight.discard(key)
            value = values[index] if index < len(values) else None
            if keep and value is not None and not overtaken:
                self._copies[key] = (value, now)
        if len(self._copies) > self._max_entries:
            self._evict()

    # -- invalidation --

    def invalidate(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._copies.pop(key, None)
            if key in self._in_flight:
                self._invalidated_in_flight.add(key)

    def clear(self) -> None:
        self._copies.clear()
        self._invalidated_in_flight.update(self._in_flight)
        self._generation += 1

    def _evict(self) -> None:
        """Drop the oldest tenth: a copy is stored only after a miss, so dicts keep age order."""
        excess = len(self._copies) - self._max_entries + self._max_entries // 10
        for key in list(self._copies)[:excess]:
            del self._copies[key]

    # -- the tracking connections --

    def start(self) -> None:
        """Begin tracking in the background (idempotent; nothing connects before this)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._track_forever(), name="cache-near-tracking")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._go_dark()

    async def _track_forever(self) -> None:
        delay = RECONNECT_DELAY_S
        while True:
            try:
                await self._track()
            except* (RedisError, OSError, TimeoutError) as errors:
                cause = errors.exceptions[0]
                # once per outage (a Redis that refuses CLIENT TRACKING would repeat forever)
                first = self._live or delay == RECONNECT_DELAY_S
                level = logging.WARNING if first else logging.DEBUG
                log.log(level, "cache invalidations interrupted (%r); local copies off", cause)
            except* Exception:  # a bug: keep the copies off, say so, try again later
                log.exception("cache invalidation tracking failed; local copies off")
            finally:
                if self._live:
                    delay = RECONNECT_DELAY_S  # it was up: the next try comes soon
                self._go_dark()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY_S)

    def _go_dark(self) -> None:
        if self._live:
            metrics.CACHE_NEAR_LIVE.set(0)
        self._live = False
        self.clear()

    async def _track(self) -> None:
        listener = self._connection()
        tracker = self._connection()
        try:
            await listener.connect()  # type: ignore[no-untyped-call]
            await tracker.connect()  # type: ignore[no-untyped-call]
            listener_id = await _call(listener, "CLIENT", "ID")
            await _call(listener, "SUBSCRIBE", INVALIDATION_CHANNEL)
            await _call(
                tracker, "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id, "BCAST",
                "PREFIX", self._prefix,
            )  # fmt: skip
            self.clear()
            self._live = True
            metrics.CACHE_NEAR_LIVE.set(1)
            async with asyncio.TaskGroup() as group:  # either one failing stops both
                group.create_task(self._listen(listener))
                group.create_task(self._ping(tracker))
        finally:
            await listener.disconnect()
            await tracker.disconnect()

    async def _listen(self, listener: AbstractConnection) -> None:
        while True:
            message: Any = await listener.read_response()
            if isinstance(message, list) and len(message) == 3 and message[0] == "message":
                keys = message[2]
                if keys is None:  # FLUSHDB / FLUSHALL
                    self.clear()
                else:
                    keys = keys if isinstance(keys, list) else [keys]
                    self.invalidate(keys)
                    metrics.CACHE_NEAR_INVALIDATIONS.inc(len(keys))

    async def _ping(self, tracker: AbstractConnection) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            async with asyncio.timeout(PING_INTERVAL_S):
                await _call(tracker, "PING")

    def _connection(self) -> AbstractConnection:
        """A RESP2 connection like the client's, without its read timeout (invalidations may
        be rare)."""
        pool = self._client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None, "protocol": 2}
        connection: AbstractConnection = pool.connection_class(**kwargs)
        return connection


async def _call(connection: AbstractConnection, *args: Any) -> Any:
    await connection.send_command(*args)
    return await connection.read_response()
