"""The cache's Lua scripts (``lua/*.lua``), registered on a Redis client, and how they are called.

Every write goes through ONE script, ``versioned_write.lua``, that keeps, per row, the newest of
what it is given and what is stored: a version not newer than the stored one changes nothing,
so redelivered, reordered or late writes (a stock-changed event, a fill from PostgreSQL) never
regress the cache.

Only a fill from PostgreSQL (which read every row of the SKU) marks the aggregate complete; a
stock-changed event for a SKU not cached yet starts an incomplete aggregate, which readers
treat as a miss. Readers use an aggregate only when it is complete, so a SKU's set of
warehouses is never answered from a partial picture. A complete aggregate with no warehouse
is the cached "unknown SKU"; a stock created later reaches it through its stock-changed event.

TTL: a key gets the TTL when it is created and an aggregate again on each fill; events never
extend it, so every aggregate is re-read from PostgreSQL at least once per TTL and a lost event
cannot keep a hot SKU wrong for longer than that.

``multi_read.lua`` returns many SKU aggregates in one call. Both scripts are called by EVALSHA
(the SHA computed locally) and loaded again on NOSCRIPT.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from service.cache.codec import StockState
from service.cache.keys import sku_key, stock_key
from service.domain.values import Sku

# The rows of one SKU, and whether they are a complete read of it from PostgreSQL (a fill).
SkuWrite: TypeAlias = tuple[Sku, Sequence[StockState], bool]

# SKUs per script call: Redis serves no other client while a script runs, so a fill of a
# thousand SKUs (a bulk read that missed) goes out as several calls, pipelined.
MAX_SKUS_PER_CALL = 100


def _lua(name: str) -> str:
    return (resources.files("service.cache") / "lua" / name).read_text(encoding="utf-8")


VERSIONED_WRITE = _lua("versioned_write.lua")
MULTI_READ = _lua("multi_read.lua")


class CacheScripts:
    """The scripts registered on one client; nothing is sent to Redis before the first call."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._versioned_write = client.register_script(VERSIONED_WRITE)
        self._multi_read = client.register_script(MULTI_READ)

    async def read(self, keys: Sequence[str]) -> list[Any]:
        """The aggregates under ``keys``, one string each, as ``multi_read.lua`` encodes them."""
        replies: list[Any] = await self._multi_read(keys=keys)
        return replies

    async def write(self, writes: Sequence[SkuWrite], ttl_s: int) -> list[Any]:
        """One EVALSHA per ``MAX_SKUS_PER_CALL`` SKUs, pipelined: one round trip (two after a
        NOSCRIPT).

        Returns, per SKU, one flag per row: 1 if the row was newer than what the cache held.
        Many SKUs per call rather than one: a batch writes up to a few dozen SKUs, and a
        pipeline of one call per SKU spent most of the write's CPU packing its arguments.
        """
        commands = [
            _write_command(writes[start : start + MAX_SKUS_PER_CALL], ttl_s)
            for start in range(0, len(writes), MAX_SKUS_PER_CALL)
        ]
        replies = await self._evalsha_pipeline(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self._client.script_load(VERSIONED_WRITE)  # Redis restarted or was flushed
            replies = await self._evalsha_pipeline(commands)
        flags: list[Any] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            flags.extend(reply)
        return flags

    async def _evalsha_pipeline(self, commands: Sequence[list[Any]]) -> list[Any]:
        sha = self._versioned_write.sha
        if len(commands) <= 1:
            try:
                return [await self._client.evalsha(sha, *command) for command in commands]
            except NoScriptError as error:
                return [error]
        # EVALSHA by hand: a pipeline handed the script object asks SCRIPT EXISTS first, one
        # more round trip on every write
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.evalsha(sha, *command)
        return list(await pipe.execute(raise_on_error=False))


def _write_command(writes: Sequence[SkuWrite], ttl_s: int) -> list[Any]:
    """EVALSHA's arguments after the SHA, as ``versioned_write.lua`` reads them."""
    keys: list[str] = []
    args: list[Any] = [ttl_s]
    for sku, rows, fill in writes:
        keys.append(sku_key(sku))
        keys.extend(stock_key(sku, row.warehouse_id) for row in rows)
        args.append("1" if fill else "0")
        args.append(len(rows))
        args.extend(row.arg() for row in rows)
    return [len(keys), *keys, *args]
