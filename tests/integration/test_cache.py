"""The Redis cache against the real Redis and PostgreSQL of the test stack.

Versioned writes (older after newer changes nothing), the SKU aggregate, read-through with
fills that never overwrite newer events, negative caching, a burst of 1,000 reservations
whose outbox events leave the cache equal to the database, rows with stock policies and
backorders (negative levels) answered by sellable stock as PostgreSQL's rows are, entries in
another format read as misses, and Redis stopped mid-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import RedisError
from sqlalchemy import text

from service.bootstrap import Container
from service.cache import (
    CachedStockQueries,
    StockCache,
    StockState,
    build_cache,
    sku_key,
    stock_key,
    warm_many,
)
from service.cache.breaker import BreakerState
from service.cache.codec import parse_line
from service.cache.scripts import MAX_SKUS_PER_CALL
from service.domain import validation as v
from service.domain.commands import Commit, Release, Source
from service.domain.errors import InsufficientStock, NotFound
from service.domain.events import stock_changed_payload
from service.domain.results import Availability, StockLevel, StockView
from service.domain.snapshot import StockRow
from service.domain.values import Item, Levels, Sku, StockPolicy
from service.queries import StockQueries
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

WAREHOUSES = (("wh-north", 10), ("wh-south", 20))  # (id, priority); "default" exists already
OFF_THE_BOOKS = Sku("prod-only-in-redis")  # written while Redis is down, read by no one
REDIS_WITHIN_S = 30.0  # a bound for a broken test, not a figure under test
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class Cached:
    cache: StockCache
    queries: CachedStockQueries
    plain: StockQueries


@pytest.fixture
async def cached(container: Container) -> AsyncIterator[Cached]:
    # a generous timeout: these tests count hits, and the machine is shared
    settings = container.settings.model_copy(
        update={"cache_timeout_ms": 2_000, "cache_breaker_cooldown_s": 0.2}
    )
    cache = build_cache(settings)
    await add_warehouses(container)
    try:
        yield Cached(
            cache,
            CachedStockQueries(container.db, cache, allow_split=settings.allow_split),
            StockQueries(container.db, allow_split=settings.allow_split),
        )
    finally:
        await cache.close()


async def add_warehouses(container: Container) -> None:
    async with container.db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO warehouses (id, name, priority, active) VALUES (:i, :i, :p, true) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            [{"i": wid, "p": priority} for wid, priority in WAREHOUSES],
        )


async def set_stock(
    container: Container, product: str, quantity: int, warehouse: str, variant: str | None = None
) -> None:
    await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=variant,
            warehouse_id=warehouse,
            operation="SET",
            quantity=quantity,
            reason="cache test",
            limits=container.limits,
            default_warehouse_id=container.settings.default_warehouse_id,
        )
    )


async def stock_changed_payloads(container: Container) -> list[dict[str, Any]]:
    async with container.db.connect() as conn:
        rows = await conn.execute(
            text("SELECT payload FROM outbox WHERE topic = :topic ORDER BY id"),
            {"topic": container.settings.topic_stock_changed},
        )
        return [row.payload for row in rows]


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("inventory_cache_requests_total", {"result": result}) or 0.0


def state(sku: Sku, warehouse: str, available: int, reserved: int, version: int) -> StockState:
    return StockState(sku, warehouse, available, reserved, available + reserved, version)


ROW_FIELDS = (
    "available",
    "reserved",
    "total",
    "version",
    "safety_stock",
    "reorder_point",
    "backorder_limit",
    "backordered",
)


def packed(level: StockLevel) -> str:
    """A row as the aggregate's ``w:<warehouse>`` field holds it (``service/cache/codec.py``)."""
    reorder_point = "" if level.reorder_point is None else level.reorder_point
    return (
        f"{level.available}|{level.reserved}|{level.total}|{level.version}|"
        f"{level.safety_stock}|{reorder_point}|{level.backorder_limit}|{level.backordered}|"
        f"{level.stock_id}"
    )


async def db_truth(container: Container, skus: Sequence[Sku]) -> dict[Sku, StockView]:
    plain = StockQueries(container.db)
    return {sku: await plain.get_stock(sku, None) for sku in skus}


async def assert_cache_equals_db(cache: StockCache, truth: dict[Sku, StockView]) -> None:
    for sku, view in truth.items():
        aggregate = await cache.client.hgetall(sku_key(sku))
        expected = {f"w:{level.warehouse_id}": packed(level) for level in view.warehouses}
        assert {k: val for k, val in aggregate.items() if k.startswith("w:")} == expected
        assert int(aggregate["available"]) == view.available
        assert int(aggregate["reserved"]) == view.reserved
        assert int(aggregate["total"]) == view.total
        assert aggregate["complete"] == "1"
        for level in view.warehouses:
            row = await cache.client.hgetall(stock_key(sku, level.warehouse_id))
            fields = (*ROW_FIELDS, "stock_id")
            assert "|".join(row[field] for field in fields) == packed(level)


# -- the versioned write --


async def test_an_older_version_after_a_newer_one_changes_nothing(cached: Cached) -> None:
    cache, sku = cached.cache, Sku("prod-v", "var-1")
    newer = state(sku, "wh-north", 7, 3, 5)
    assert (await cache.apply([newer])).applied == 1
    before = (
        await cache.client.hgetall(sku_key(sku)),
        await cache.client.hgetall(stock_key(sku, "wh-north")),
    )
    ttl_before = await cache.client.ttl(sku_key(sku))

    for older in (state(sku, "wh-north", 100, 0, 4), state(sku, "wh-north", 1, 1, 5), newer):
        outcome = await cache.apply([older])
        assert (outcome.applied, outcome.stale) == (0, 1)

    after = (
        await cache.client.hgetall(sku_key(sku)),
        await cache.client.hgetall(stock_key(sku, "wh-north")),
    )
    assert after == before
    assert 0 < await cache.client.ttl(sku_key(sku)) <= ttl_before


async def test_the_sku_aggregate_sums_the_warehouses(cached: Cached) -> None:
    cache, sku = cached.cache, Sku("prod-sum")
    await cache.apply(
        [
            state(sku, "wh-north", 10, 2, 1),
            state(sku, "wh-south", 5, 0, 3),
            state(sku, "default", 1, 4, 2),
        ]
    )
    await cache.apply([state(sku, "wh-south", 4, 1, 4)])
    aggregate = await cache.client.hgetall(sku_key(sku))
    assert (aggregate["available"], aggregate["reserved"], aggregate["total"]) == ("15", "7", "22")
    assert aggregate["version"] == str(1 + 4 + 2)
    assert "complete" not in aggregate  # events alone never make a SKU complete
    assert 0 < await cache.client.ttl(sku_key(sku)) <= cache._ttl_s
    assert 0 < await cache.client.ttl(stock_key(sku, "wh-north")) <= cache._ttl_s


C_ROWS = (("wh-north", 4, 0, 1), ("wh-south", 5, 1, 2), ("default", 6, 0, 3))


async def test_one_call_writes_many_skus_each_with_its_rows_and_fill(cached: Cached) -> None:
    """``versioned_write.lua`` takes every SKU of a batch in one call: each SKU's keys and
    values are its own, a stale row stays stale beside fresh ones, a fill marks only its SKU
    complete (an empty fill is the cached unknown SKU)."""
    cache = cached.cache
    a, b, c, unknown = Sku("multi-a"), Sku("multi-b", "v"), Sku("multi-c"), Sku("multi-none")
    await cache.apply([state(b, "wh-north", 50, 0, 9)])  # newer than what comes next for b
    flags = await cache._scripts.write(
        [
            (a, [state(a, "wh-north", 1, 1, 1), state(a, "wh|pipe", 2, 0, 1)], False),
            (b, [state(b, "wh-north", 3, 0, 2)], False),
            (c, [state(c, w, n, r, v) for w, n, r, v in C_ROWS], True),
            (unknown, [], True),
        ],
        cache._ttl_s,
    )
    assert flags == [[1, 1], [0], [1, 1, 1], []]
    aggregates = {sku: await cache.client.hgetall(sku_key(sku)) for sku in (a, b, c, unknown)}
    assert (aggregates[a]["available"], aggregates[a]["reserved"]) == ("3", "1")
    assert aggregates[b]["available"] == "50"  # the stale row changed nothing
    assert (aggregates[c]["available"], aggregates[c]["total"]) == ("15", "16")
    assert [sku for sku, agg in aggregates.items() if agg.get("complete") == "1"] == [c, unknown]
    assert (await cache.client.hgetall(stock_key(c, "default")))["available"] == "6"
    assert aggregates[a]["w:wh|pipe"].startswith("2|0|2|1|")  # a '|' in a warehouse id


async def test_a_write_of_more_skus_than_a_call_takes_goes_out_in_several(cached: Cached) -> None:
    """``MAX_SKUS_PER_CALL`` bounds how long one script holds Redis; the flags still come back
    one list per SKU, in order. A Redis that lost its scripts gets them again, on either path."""
    cache = cached.cache
    skus = [Sku(f"many-{i}") for i in range(MAX_SKUS_PER_CALL * 2 + 5)]
    writes = [(sku, [state(sku, "wh-north", i, 0, 1)], True) for i, sku in enumerate(skus)]
    await cache.client.script_flush()
    assert await cache._scripts.write(writes, cache._ttl_s) == [[1]] * len(skus)
    await cache.client.script_flush()
    assert await cache._scripts.write(writes[:1], cache._ttl_s) == [[0]]  # not newer
    last = await cache.client.hgetall(sku_key(skus[-1]))
    assert (last["available"], last["complete"]) == (str(len(skus) - 1), "1")


async def test_keys_of_ids_with_separators_never_collide(cached: Cached) -> None:
    cache = cached.cache
    one, other = Sku("a:b"), Sku("a", "b")
    await cache.apply([state(one, "w", 1, 0, 1), state(other, "w", 2, 0, 1)])
    [first, second] = await cache.read([one, other])
    assert first is not None and second is not None
    assert (first.lines, second.lines) == (("1|0|1|1|0||0|0||w",), ("2|0|2|1|0||0|0||w",))


# -- read-through --


async def test_a_miss_fills_and_the_next_read_hits(cached: Cached, container: Container) -> None:
    await set_stock(container, "prod-rt", 30, "wh-north")
    await set_stock(container, "prod-rt", 12, "wh-south")
    sku = Sku("prod-rt")
    hits, misses = counted("hit"), counted("miss")

    first = await cached.queries.get_stock(sku, None)
    assert counted("miss") == misses + 1
    second = await cached.queries.get_stock(sku, None)
    assert counted("hit") == hits + 1
    expected = await cached.plain.get_stock(sku, None)
    assert first == second == expected
    assert [w.warehouse_id for w in second.warehouses] == ["wh-north", "wh-south"]
    assert await cached.queries.get_stock(sku, "wh-south") == await cached.plain.get_stock(
        sku, "wh-south"
    )
    with pytest.raises(NotFound):
        await cached.queries.get_stock(sku, "default")
    await assert_cache_equals_db(cached.cache, await db_truth(container, [sku]))


async def test_a_fill_never_overwrites_a_newer_event(cached: Cached, container: Container) -> None:
    await set_stock(container, "prod-race", 20, "wh-north")
    sku = Sku("prod-race")
    level = (await cached.plain.get_stock(sku, None)).warehouses[0]
    # the warmer got a newer state before the reader's fill of what it read earlier
    await cached.cache.apply([state(sku, "wh-north", 15, 5, level.version + 1)])
    await cached.cache.fill({sku: [level]})

    [entry] = await cached.cache.read([sku])
    assert entry is not None and entry.complete
    # the line the reader uses (its row, then the warehouse); the fill still contributes the
    # immutable stock id
    newer = StockLevel(level.stock_id, sku, "wh-north", 15, 5, 20, level.version + 1)
    assert entry.lines == (f"{packed(newer)}|wh-north",)


async def test_unknown_skus_are_cached_until_a_stock_is_created(
    cached: Cached, container: Container
) -> None:
    sku = Sku("prod-new", "v1")
    [before] = await cached.queries.check_stock([Item(sku, 1)])
    assert not before.known
    assert (await cached.cache.client.hgetall(sku_key(sku)))["complete"] == "1"
    hits = counted("hit")
    [again] = await cached.queries.check_stock([Item(sku, 1)])
    assert not again.known and counted("hit") == hits + 1  # negative answers are cached

    await set_stock(container, "prod-new", 8, "wh-south", variant="v1")
    for payload in await stock_changed_payloads(container):
        await warm_many(cached.cache, [payload])
    [after] = await cached.queries.check_stock([Item(sku, 5)])
    assert after.known and after.sufficient and after.warehouses == {"wh-south": 8}
    # the event has no stock id, so GetStock reads (and refills) the row from PostgreSQL once
    view = await cached.queries.get_stock(sku, None)
    assert view == await cached.plain.get_stock(sku, None)


async def test_bulk_check_reads_redis_once_and_the_database_once(
    cached: Cached, container: Container
) -> None:
    for index in range(6):
        await set_stock(container, f"prod-bulk-{index}", 10 + index, "wh-north")
    items = [Item(Sku(f"prod-bulk-{index}"), 11) for index in range(8)]  # 6, 7: unknown
    await cached.queries.check_stock(items[:3])  # three of them cached

    calls: list[str] = []
    cache_read, db_levels = cached.cache.read, StockQueries._levels

    async def read(skus: Sequence[Sku]) -> Any:
        calls.append(f"redis:{len(skus)}")
        return await cache_read(skus)

    async def levels(self: StockQueries, skus: Any) -> Any:
        skus = list(skus)
        calls.append(f"db:{len(skus)}")
        return await db_levels(self, skus)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cached.cache, "read", read)
        patch.setattr(StockQueries, "_levels", levels)
        answers = await cached.queries.check_stock(items)
    assert calls == ["redis:8", "db:5"]
    assert answers == await cached.plain.check_stock(items)
    assert [a.sufficient for a in answers] == [False, True, True, True, True, True, False, False]


async def test_a_hit_after_an_event_answers_the_new_levels(
    cached: Cached, container: Container
) -> None:
    await set_stock(container, "prod-hot", 50, "wh-north")
    sku = Sku("prod-hot")
    await cached.queries.get_stock(sku, None)  # miss, fill
    first = await cached.queries.get_stock(sku, None)  # hit
    await set_stock(container, "prod-hot", 7, "wh-north")
    for payload in await stock_changed_payloads(container):
        await warm_many(cached.cache, [payload])
    hits = counted("hit")
    second = await cached.queries.get_stock(sku, None)
    assert counted("hit") == hits + 1
    assert (first.available, second.available) == (50, 7)
    assert second == await cached.plain.get_stock(sku, None)


async def test_inactive_warehouses_count_as_in_postgresql(
    cached: Cached, container: Container
) -> None:
    await set_stock(container, "prod-idle", 10, "wh-north")
    await set_stock(container, "prod-idle", 5, "wh-south")
    async with container.db.begin() as conn:
        await conn.execute(text("UPDATE warehouses SET active = false WHERE id = 'wh-south'"))
    queries = CachedStockQueries(container.db, cached.cache)  # a fresh warehouse directory
    items = [Item(Sku("prod-idle"), 12), Item(Sku("prod-idle"), 1, "wh-south")]
    await queries.check_stock(items)  # fill
    hits = counted("hit")
    answers = await queries.check_stock(items)
    assert counted("hit") == hits + 1
    assert answers == await cached.plain.check_stock(items)
    assert [(a.available, a.sufficient) for a in answers] == [(10, False), (0, False)]


async def test_concurrent_reads_share_round_trips_and_answer_alike(
    cached: Cached, container: Container
) -> None:
    skus = [Sku(f"prod-many-{i}") for i in range(12)]
    for index, sku in enumerate(skus):
        await set_stock(container, sku.product_id, index + 1, "wh-south")
    await cached.queries.check_stock([Item(sku, 1) for sku in skus[:6]])
    rng = random.Random(3)
    requests = [rng.sample(skus, rng.randint(1, 5)) for _ in range(200)]
    answers = await asyncio.gather(
        *(cached.queries.check_stock([Item(sku, 2) for sku in chosen]) for chosen in requests)
    )
    for chosen, answer in zip(requests, answers, strict=True):
        assert answer == await cached.plain.check_stock([Item(sku, 2) for sku in chosen])


# -- stock policies: safety stock, backorders --


async def test_a_backordered_row_with_a_policy_round_trips(cached: Cached) -> None:
    cache, sku = cached.cache, Sku("prod-backorder", "v")
    policy = StockPolicy(safety_stock=1, reorder_point=5, backorder_limit=6)
    filled = StockLevel("sid-1", sku, "wh-north", 4, 0, 4, 3, 1, 5, 6, 0)
    await cache.fill({sku: [filled]})

    async def cached_row() -> StockLevel | None:
        [entry] = await cache.read([sku])
        assert entry is not None and entry.complete and len(entry.lines) == 1
        return parse_line(sku, entry.lines[0])

    assert await cached_row() == filled

    # 7 reserved of 4 on hand: 1 of them safety stock, so 4 units are backordered
    row = StockRow("sid-1", sku, "wh-north", Levels(-3, 7, 4), 4, policy=policy, backordered=4)
    event = stock_changed_payload(row, "RESERVE", "o-1", AT)
    assert (await warm_many(cache, [event])).applied == 1
    backordered = StockLevel("sid-1", sku, "wh-north", -3, 7, 4, 4, 1, 5, 6, 4)
    assert await cached_row() == backordered and backordered.sellable == -4
    stored = await cache.client.hgetall(stock_key(sku, "wh-north"))
    assert {k: val for k, val in stored.items() if k != "at"} == {
        "available": "-3",
        "reserved": "7",
        "total": "4",
        "version": "4",
        "safety_stock": "1",
        "reorder_point": "5",
        "backorder_limit": "6",
        "backordered": "4",
        "stock_id": "sid-1",
    }
    assert (await cache.client.hgetall(sku_key(sku)))["available"] == "-3"

    # committed before the stock came: nothing on hand, 3 owed; the policy's reorder point
    # dropped. Then a redelivery of the older event changes nothing.
    row.levels, row.version = Levels(-3, 0, -3), 5
    row.policy = StockPolicy(safety_stock=1, backorder_limit=6)
    assert (await warm_many(cache, [stock_changed_payload(row, "COMMIT", "o-1", AT)])).applied
    assert (await warm_many(cache, [event])).stale == 1
    shipped = StockLevel("sid-1", sku, "wh-north", -3, 0, -3, 5, 1, None, 6, 4)
    assert await cached_row() == shipped
    aggregate = await cache.client.hgetall(sku_key(sku))
    assert (aggregate["available"], aggregate["total"]) == ("-3", "-3")


@pytest.mark.parametrize(
    "level",
    [
        StockLevel("sid", Sku("prod-edge"), "w", -(2**53), 2**53, 0, 2**40, 0, 0, 2**53, 2**53),
        StockLevel("sid", Sku("prod-edge"), "w", 2**53, 0, 2**53, 1, 2**53, 2**53, 0, 0),
        StockLevel("sid", Sku("prod-edge"), "w", 0, 0, 0, 1, 0, 0, 0, 0),  # reorder point 0
    ],
)
async def test_extreme_values_round_trip_exactly(cached: Cached, level: StockLevel) -> None:
    await cached.cache.fill({level.sku: [level]})
    [entry] = await cached.cache.read([level.sku])
    assert entry is not None and parse_line(level.sku, entry.lines[0]) == level
    aggregate = await cached.cache.client.hgetall(sku_key(level.sku))
    assert int(aggregate["available"]) == level.available
    assert int(aggregate["version"]) == level.version


async def test_cached_reads_answer_by_sellable_as_postgresql_does(
    cached: Cached, container: Container
) -> None:
    sku = Sku("prod-sellable")
    await set_stock(container, sku.product_id, 10, "wh-north")
    await set_stock(container, sku.product_id, 2, "wh-south")
    # wh-north keeps 4 of its 10 back; wh-south took 5 in reservations on 2 in stock, 3 of
    # them backordered (set in SQL: only the rows' state matters here, not how it came about)
    async with container.db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE stocks SET safety_stock = 4, reorder_point = 8, version = version + 1 "
                "WHERE product_id = :p AND warehouse_id = 'wh-north'"
            ),
            {"p": sku.product_id},
        )
        await conn.execute(
            text(
                "UPDATE stocks SET available = -3, reserved = 5, backorder_limit = 6, "
                "backordered = 3, version = version + 1 "
                "WHERE product_id = :p AND warehouse_id = 'wh-south'"
            ),
            {"p": sku.product_id},
        )
    items = [Item(sku, 6), Item(sku, 7), Item(sku, 1, "wh-south"), Item(sku, 6, "wh-north")]
    expected = await cached.plain.check_stock(items)
    await cached.queries.check_stock(items)  # a miss: filled from those rows
    hits = counted("hit")
    answers = await cached.queries.check_stock(items)
    assert counted("hit") == hits + 1
    assert answers == expected
    # by sellable: wh-north 10 - 4; wh-south none, its backorders counted from zero
    assert [(a.available, a.sufficient) for a in answers] == [
        (6, True),
        (6, False),
        (0, False),
        (6, True),
    ]
    assert answers[0].warehouses == {"wh-north": 6, "wh-south": 0}

    view = await cached.queries.get_stock(sku, None)
    assert counted("hit") == hits + 2
    assert view == await cached.plain.get_stock(sku, None)
    assert [(level.sellable, level.backordered) for level in view.warehouses] == [(6, 0), (-3, 3)]
    await assert_cache_equals_db(cached.cache, {sku: view})


async def test_an_entry_in_another_format_is_a_miss_and_is_rewritten(
    cached: Cached, container: Container
) -> None:
    await set_stock(container, "prod-old", 9, "wh-north")
    sku = Sku("prod-old")
    truth = await cached.plain.get_stock(sku, None)
    level = truth.warehouses[0]
    # the format before policies: a miss, never read as the default policy
    before = f"{level.available}|{level.reserved}|{level.total}|{level.version}|{level.stock_id}"
    client = cached.cache.client
    await client.hset(sku_key(sku), mapping={"w:wh-north": before, "complete": "1"})
    await client.hset(
        stock_key(sku, "wh-north"),
        mapping={"available": 9, "reserved": 0, "total": 9, "version": level.version},
    )
    # ... and its keys are not this format's
    await client.hset("inv:sku:{prod-old}", mapping={"w:wh-north": "99|0|99|99|x", "complete": 1})

    misses = counted("miss")
    assert await cached.queries.get_stock(sku, None) == truth
    assert counted("miss") == misses + 1
    await assert_cache_equals_db(cached.cache, {sku: truth})  # the fill rewrote it
    hits = counted("hit")
    assert await cached.queries.get_stock(sku, None) == truth
    assert counted("hit") == hits + 1


# -- the engine's own writes --


async def test_an_rpc_answers_after_its_rows_are_cached_and_events_are_cached_after(
    cached: Cached, container: Container
) -> None:
    sku = Sku("prod-own-writes")
    await set_stock(container, sku.product_id, 100, "wh-north")
    await cached.queries.check_stock([Item(sku, 1)])  # a complete aggregate in Redis
    item = {"product_id": sku.product_id, "quantity": 2}

    await container.engine.reserve(v.reserve("own-rpc", [item], None, container.limits))
    # read back at once from Redis: the RPC's batch wrote its rows before it answered
    await assert_cache_equals_db(cached.cache, await db_truth(container, [sku]))

    # an order event's batch answers at its COMMIT; its rows follow in the background
    event = v.reserve(
        "own-event",
        [item],
        None,
        container.limits,
        source=Source.STREAM,
        event_id="own-event-created",
    )
    await container.engine.execute_many([event])
    truth = await db_truth(container, [sku])
    assert truth[sku].reserved == 4

    async def cached_as_in_the_database() -> bool:
        try:
            await assert_cache_equals_db(cached.cache, truth)
        except AssertionError:
            return False
        return True

    await wait_for(
        cached_as_in_the_database, within_s=REDIS_WITHIN_S, what="the event's rows in Redis"
    )


# -- a burst of reservations, then the outbox's events --


async def test_a_burst_of_1000_reservations_leaves_the_cache_equal_to_the_database(
    cached: Cached, container: Container
) -> None:
    skus = [Sku(f"prod-burst-{i}", "v" if i % 2 else None) for i in range(5)]
    for sku in skus:
        await set_stock(container, sku.product_id, 150, "wh-north", sku.variant_id)
        await set_stock(container, sku.product_id, 400, "wh-south", sku.variant_id)
    await cached.queries.check_stock([Item(sku, 1) for sku in skus])  # complete aggregates

    rng = random.Random(5)
    orders = [(f"burst-{n}", rng.choice(skus), rng.randint(1, 3)) for n in range(1_000)]

    async def reserve(order_id: str, sku: Sku, quantity: int) -> None:
        item = {"product_id": sku.product_id, "variant_id": sku.variant_id, "quantity": quantity}
        with contextlib.suppress(InsufficientStock):  # a shortage is a fine outcome here
            await container.engine.reserve(v.reserve(order_id, [item], None, container.limits))

    await asyncio.gather(*(reserve(*order) for order in orders))
    settle = [
        Commit(order_id) if n % 3 == 0 else Release(order_id, "changed mind")
        for n, (order_id, _, _) in enumerate(orders[:300])
    ]
    await container.engine.execute_many(settle)

    payloads = await stock_changed_payloads(container)
    assert len(payloads) > 10
    for payload in payloads:  # the relay's order: by outbox id
        await warm_many(cached.cache, [payload])

    truth = await db_truth(container, skus)
    await assert_cache_equals_db(cached.cache, truth)
    hits = counted("hit")
    for sku in skus:
        assert await cached.queries.get_stock(sku, None) == truth[sku]
    assert counted("hit") == hits + len(skus)

    # redelivered and reordered: still equal
    shuffled = payloads[:] + payloads[: len(payloads) // 2]
    rng.shuffle(shuffled)
    outcome = await warm_many(cached.cache, shuffled)
    assert outcome.applied == 0
    await assert_cache_equals_db(cached.cache, truth)


async def test_events_applied_in_any_order_end_at_the_newest(
    cached: Cached, container: Container
) -> None:
    sku = Sku("prod-order")
    for quantity in range(1, 21):
        await set_stock(container, "prod-order", quantity, "wh-north")
        await set_stock(container, "prod-order", quantity * 2, "wh-south")
    payloads = await stock_changed_payloads(container)
    random.Random(7).shuffle(payloads)
    await warm_many(cached.cache, payloads)
    await cached.cache.fill({sku: (await cached.plain.get_stock(sku, None)).warehouses})
    await assert_cache_equals_db(cached.cache, await db_truth(container, [sku]))


# -- Redis down --


async def test_with_redis_stopped_every_read_answers_from_postgresql(
    cached: Cached, container: Container, stack: Any
) -> None:
    skus = [Sku(f"prod-down-{i}") for i in range(4)]
    for index, sku in enumerate(skus):
        await set_stock(container, sku.product_id, 10 * (index + 1), "wh-north")
    items = [Item(sku, 15) for sku in skus] + [Item(Sku("prod-down-unknown"), 1)]
    expected_views = {sku: await cached.plain.get_stock(sku, None) for sku in skus}
    expected_checks = await cached.plain.check_stock(items)
    await cached.queries.check_stock(items[:2])  # some of it cached before the outage

    async def read_all() -> None:
        for sku in skus:
            assert await cached.queries.get_stock(sku, None) == expected_views[sku]
        assert await cached.queries.check_stock(items) == expected_checks
        for item, expected in zip(items, expected_checks, strict=True):
            assert await cached.queries.check_stock([item]) == [expected]

    async def read_all_and_see_redis_gone() -> bool:
        await read_all()  # copies kept in this process answer until it sees Redis gone
        return cached.cache.breaker.state is not BreakerState.CLOSED

    fallbacks = counted("fallback")
    reader = asyncio.create_task(_read_until_cancelled(read_all))
    try:
        await read_all()
        stack.stop_redis()  # mid-run: the reader keeps going
        await wait_for(
            read_all_and_see_redis_gone,
            within_s=REDIS_WITHIN_S,
            what="the breaker tripped",
            every_s=0.01,
        )
        assert counted("fallback") > fallbacks
        deferred = await cached.cache.apply([state(OFF_THE_BOOKS, "wh-north", 1, 0, 10_000)])
        assert deferred.deferred == 1 and cached.cache.pending == 1
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader  # it raised nothing else while Redis was down
    finally:
        reader.cancel()
        stack.start_redis()

    # back: after the cooldown a probe closes the breaker, reads refill the cache, and the
    # write that was deferred is replayed
    await wait_for(
        lambda: _refilled(cached, items),
        within_s=REDIS_WITHIN_S,
        what="the cache refilled",
        ignoring=(RedisError,),  # Redis may still refuse for a moment
    )
    await read_all_with(cached, skus, expected_views)
    await wait_for(
        lambda: _replayed(cached.cache, OFF_THE_BOOKS),
        within_s=REDIS_WITHIN_S,
        what="the deferred write replayed",
        ignoring=(RedisError,),
    )


async def read_all_with(cached: Cached, skus: list[Sku], views: dict[Sku, StockView]) -> None:
    for sku in skus:
        assert await cached.queries.get_stock(sku, None) == views[sku]


async def _read_until_cancelled(read_all: Any) -> None:
    while True:
        await read_all()
        await asyncio.sleep(0)


async def _refilled(cached: Cached, items: list[Item]) -> bool:
    answers: list[Availability] = await cached.queries.check_stock(items)
    assert answers == await cached.plain.check_stock(items)
    entries = [await cached.cache.client.hgetall(sku_key(item.sku)) for item in items]
    return all(entry.get("complete") == "1" for entry in entries)


async def _replayed(cache: StockCache, sku: Sku) -> bool:
    row = await cache.client.hgetall(stock_key(sku, "wh-north"))
    return cache.pending == 0 and row.get("version") == "10000"
