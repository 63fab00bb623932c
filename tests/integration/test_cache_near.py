"""The near cache against the real Redis: copies answer, Redis's invalidations drop them.

"Another process" is a second StockCache with its own connections, as an API process next to
this one would be; the assertions wait (bounded) for Redis's invalidation message to arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from service.cache import StockCache, StockState, build_cache
from service.config import Settings
from service.domain.results import StockLevel
from service.domain.values import Sku
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

SKU = Sku("prod-near", "v1")
WITHIN_S = 10.0  # a bound for a broken test, not a figure under test


def state(version: int, available: int) -> StockState:
    return StockState(SKU, "wh-near", available, 0, available, version, stock_id="s-1")


def level(version: int, available: int) -> StockLevel:
    return StockLevel("s-1", SKU, "wh-near", available, 0, available, version)


@pytest.fixture
async def caches(settings: Settings) -> AsyncIterator[tuple[StockCache, StockCache]]:
    generous = settings.model_copy(update={"cache_timeout_ms": 2_000})
    here, there = build_cache(generous), build_cache(generous)
    try:
        yield here, there
    finally:
        await here.close()
        await there.close()


async def near_live(cache: StockCache) -> None:
    await cache.read([SKU])  # the first read starts the tracking connections

    async def live() -> bool:
        return cache._near is not None and cache._near.live

    await wait_for(live, within_s=WITHIN_S, what="the near cache live", every_s=0.01)


def redis_reads(cache: StockCache, patch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = cache._read_redis

    async def counting(keys: list[str]) -> Any:
        calls.append(len(keys))
        return await original(keys)

    patch.setattr(cache, "_read_redis", counting)
    return calls


async def available(cache: StockCache) -> int | None:
    [entry] = await cache.read([SKU])
    return None if entry is None else int(entry.lines[0].split("|")[0])  # available|...


async def test_a_copy_answers_until_another_process_changes_the_sku(
    caches: tuple[StockCache, StockCache], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, there = caches
    await there.fill({SKU: [level(1, 10)]})
    await near_live(here)
    reads = redis_reads(here, monkeypatch)
    assert await available(here) == 10  # read from Redis, copied
    assert await available(here) == 10 and await available(here) == 10
    assert reads == [1]

    await there.apply([state(2, 7)])  # another process, through Redis only

    async def sees_the_change() -> bool:
        return await available(here) == 7

    await wait_for(
        sees_the_change, within_s=WITHIN_S, what="the other process's change seen", every_s=0.01
    )
    assert len(reads) >= 2


async def test_a_process_reads_its_own_writes_at_once(
    caches: tuple[StockCache, StockCache],
) -> None:
    here, _ = caches
    await here.fill({SKU: [level(1, 10)]})
    await near_live(here)
    assert await available(here) == 10
    await here.apply([state(2, 3)])
    assert await available(here) == 3  # no wait for the invalidation message


async def test_a_flush_drops_every_copy(
    caches: tuple[StockCache, StockCache], settings: Settings
) -> None:
    here, _ = caches
    await here.fill({SKU: [level(1, 10)]})
    await near_live(here)
    assert await available(here) == 10
    assert here._near is not None and len(here._near) == 1
    async with Redis.from_url(settings.redis_url) as admin:
        await admin.flushdb()

    async def dropped() -> bool:
        return here._near is not None and len(here._near) == 0

    await wait_for(dropped, within_s=WITHIN_S, what="every copy dropped", every_s=0.01)
    assert await available(here) is None  # Redis is empty: a miss, not the old copy


async def test_losing_the_invalidation_connection_turns_copies_off_until_it_is_back(
    caches: tuple[StockCache, StockCache], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, _ = caches
    await here.fill({SKU: [level(1, 10)]})
    await near_live(here)
    assert await available(here) == 10
    async with Redis.from_url(settings.redis_url) as admin:
        assert await admin.client_kill_filter(_type="pubsub") >= 1
    near = here._near
    assert near is not None

    async def dark() -> bool:
        return not near.live

    await wait_for(dark, within_s=WITHIN_S, what="copies turned off", every_s=0.01)
    assert len(near) == 0
    reads = redis_reads(here, monkeypatch)
    assert await available(here) == 10 and reads == [1]  # from Redis while dark

    async def back() -> bool:
        return near.live

    await wait_for(back, within_s=WITHIN_S, what="copies back on", every_s=0.01)
