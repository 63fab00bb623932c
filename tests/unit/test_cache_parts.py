"""The cache's pure parts: breaker, keys, payload parsing, and behaviour when Redis fails."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.cache import CacheUnavailable, StockCache, StockState, sku_key, stock_key, warm_many
from service.cache.breaker import BreakerState, CircuitBreaker
from service.cache.codec import CachedSku, parse_line
from service.domain.events import MalformedEvent
from service.domain.plan import StockChange
from service.domain.results import StockLevel
from service.domain.snapshot import StockRow
from service.domain.values import DEFAULT_POLICY, Levels, Sku, StockPolicy
from streams.warmer import register_warmer
from tests.waiting import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- breaker --


def test_breaker_opens_after_failures_and_half_opens_after_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(5.0, threshold=3, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()

    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.failure()
    assert breaker.state is BreakerState.OPEN  # a failed probe opens it again at once

    clock.now += 5.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(1.0, threshold=2, clock=FakeClock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1.0, threshold=1, clock=clock)
    breaker.failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


# -- keys and values --


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (Sku("a:b"), Sku("a", "b")),
        (Sku("a%3Ab"), Sku("a:b")),
        (Sku("{a}"), Sku("a")),
    ],
)
def test_keys_of_different_skus_differ(one: Sku, other: Sku) -> None:
    assert sku_key(one) != sku_key(other)
    assert stock_key(one, "w") != stock_key(other, "w")


def test_keys_share_a_hash_tag_per_sku() -> None:
    sku = Sku("prod-123", "var-456")
    assert sku_key(sku) == "inv:v2:sku:{prod-123:var-456}"
    assert stock_key(sku, "wh:1") == "inv:v2:stock:{prod-123:var-456}:wh%3A1"
    assert stock_key(Sku("p{x}"), "w") == "inv:v2:stock:{p%7Bx%7D}:w"


def test_the_keys_name_the_format_so_entries_before_policies_are_never_read() -> None:
    # the first format (no policy fields) lived under inv:sku: and inv:stock:
    assert not sku_key(Sku("p")).startswith("inv:sku:")
    assert not stock_key(Sku("p"), "w").startswith("inv:stock:")


AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
POLICY = StockPolicy(safety_stock=1, reorder_point=5, backorder_limit=4)


def planner_payload(row: StockRow) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(StockChange(row, "RESERVE", "o-1").payload(AT)))
    return payload


def test_a_stock_changed_payload_of_the_planner_parses() -> None:
    payload = planner_payload(StockRow("sid", Sku("p", "v"), "wh", Levels(3, 2, 5), 7))
    assert StockState.from_payload(payload) == StockState(
        Sku("p", "v"), "wh", 3, 2, 5, 7, "", AT.timestamp()
    )
    payload["variant_id"] = None
    assert StockState.from_payload(payload).sku == Sku("p")


def test_a_backordered_row_with_a_policy_parses_whole() -> None:
    row = StockRow("sid", Sku("p"), "wh", Levels(-2, 6, 4), 8, policy=POLICY, backordered=3)
    assert StockState.from_payload(planner_payload(row)) == StockState(
        Sku("p"), "wh", -2, 6, 4, 8, "", AT.timestamp(), POLICY, 3
    )


def test_a_payload_from_before_policies_has_the_default_policy() -> None:
    payload = planner_payload(StockRow("sid", Sku("p"), "wh", Levels(3, 2, 5), 7))
    for field in ("sellable", "backordered", "safety_stock", "reorder_point", "backorder_limit"):
        del payload[field]
    state = StockState.from_payload(payload)
    assert (state.policy, state.backordered) == (DEFAULT_POLICY, 0)


LEVEL = StockLevel("sid", Sku("p", "v"), "wh", -2, 6, 4, 8, 1, 5, 4, 3)


def test_a_state_from_postgresql_keeps_the_policy_and_the_backorders() -> None:
    state = StockState.from_level(LEVEL)
    assert state == StockState(Sku("p", "v"), "wh", -2, 6, 4, 8, "sid", None, POLICY, 3)
    # what versioned_write.lua reads per row: levels, version, stock id, at, the policy, the
    # units backordered, the warehouse
    assert state.arg() == "-2|6|4|8|sid||1|5|4|3|wh"
    no_alert = StockState.from_level(StockLevel("sid", Sku("p"), "w|1", 1, 0, 1, 1))
    assert no_alert.arg() == "1|0|1|1|sid||0||0|0|w|1"  # no reorder point; '|' in the warehouse


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("-2|6|4|8|1|5|4|3|sid|wh", LEVEL),
        ("3|0|3|1|0||0|0|sid|wh", StockLevel("sid", Sku("p", "v"), "wh", 3, 0, 3, 1)),
        ("0|0|0|2|0|0|0|0|sid|w|1", StockLevel("sid", Sku("p", "v"), "w|1", 0, 0, 0, 2, 0, 0)),
        ("1|0|1|1|0||0|0||wh", StockLevel("", Sku("p", "v"), "wh", 1, 0, 1, 1)),  # no stock id
    ],
)
def test_a_cached_line_is_the_row_postgresql_holds(line: str, level: StockLevel) -> None:
    parsed = parse_line(Sku("p", "v"), line)
    assert parsed == level
    assert parsed is not None and parsed.sellable == level.available - level.safety_stock


@pytest.mark.parametrize(
    "line",
    [
        "3|0|3|1|sid|wh",  # the format before policies: a miss, never the default policy
        "3|0|3|1|sid|a|b|c|d|e",  # ... even with a warehouse id of as many fields
        "3|0|3|x|0||0|0|sid|wh",
        "3|0|3|1|0|none|0|0|sid|wh",
        "",
    ],
)
def test_a_line_in_another_format_is_not_read(line: str) -> None:
    assert parse_line(Sku("p"), line) is None


def test_a_malformed_payload_is_refused_as_the_events_module_refuses_it() -> None:
    # every malformed shape is tabled in tests/unit/test_events.py; this is the cache's side
    with pytest.raises(MalformedEvent, match="no reserved"):
        StockState.from_payload({"product_id": "p", "warehouse_id": "w", "available": 1})


def test_an_aggregate_parses() -> None:
    parsed = CachedSku.parse("1\n1|2|3|4|0||0|0|sid-1|wh|odd\n-5|5|0|1|0|2|9|5||b")
    assert parsed is not None and parsed.complete
    # one line per warehouse, kept as sent (the reader parses them with parse_line)
    assert parsed.lines == ("1|2|3|4|0||0|0|sid-1|wh|odd", "-5|5|0|1|0|2|9|5||b")
    incomplete = CachedSku.parse("0\n5|0|5|1|0||0|0||b")
    assert incomplete is not None and not incomplete.complete
    negative = CachedSku.parse("1")
    assert negative is not None and negative.complete and negative.lines == ()
    assert CachedSku.parse("") is None


# -- Redis failing --


class DownPipeline:
    def __init__(self, client: DownRedis) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    async def execute(self, **kwargs: Any) -> list[Any]:
        self._client.calls += 1
        raise RedisConnectionError("connection refused")


class DownRedis(Redis):
    """A Redis client whose every call fails like a stopped server.

    A real client underneath (it never connects), so the cache can register its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def evalsha(self, *args: Any) -> Any:
        self.calls += 1
        raise RedisConnectionError("connection refused")

    def pipeline(  # type: ignore[override]
        self, transaction: bool = True, shard_hint: str | None = None
    ) -> DownPipeline:
        return DownPipeline(self)


def down_cache(max_pending: int = 100) -> tuple[StockCache, DownRedis, FakeClock]:
    client, clock = DownRedis(), FakeClock()
    cache = StockCache(
        client,
        ttl_s=300,
        timeout_s=0.05,
        breaker=CircuitBreaker(5.0, threshold=3, clock=clock),
        max_pending=max_pending,
    )
    return cache, client, clock


async def test_reads_raise_cache_unavailable_and_the_breaker_stops_trying() -> None:
    cache, client, _ = down_cache()
    for _ in range(5):
        with pytest.raises(CacheUnavailable):
            await cache.read([Sku("p"), Sku("q")])
    assert client.calls == 3  # then the breaker refused without calling
    assert cache.breaker.state is BreakerState.OPEN


async def test_writes_never_raise_and_keep_the_newest_state_per_row() -> None:
    cache, _, _ = down_cache(max_pending=2)
    sku = Sku("p")
    first = await cache.apply([StockState(sku, "w", 1, 0, 1, 5)])
    assert first.deferred == 1
    await cache.apply([StockState(sku, "w", 9, 0, 9, 4)])  # older: the newer one is kept
    await cache.apply([StockState(sku, "w2", 1, 0, 1, 1)])
    last = await cache.apply([StockState(Sku("q"), "w", 1, 0, 1, 1)])
    assert last.dropped == 1 and cache.pending == 2
    assert cache._pending[(sku, "w")].version == 5
    await cache.fill({sku: []})  # a fill is best effort: nothing raised, nothing kept
    assert cache.pending == 2


async def test_a_slow_redis_times_out_as_unavailable() -> None:
    class SlowRedis(DownRedis):
        async def evalsha(self, *args: Any) -> Any:
            await asyncio.sleep(10)

    cache = StockCache(
        SlowRedis(),
        ttl_s=300,
        timeout_s=0.01,
        breaker=CircuitBreaker(5.0),
    )
    with pytest.raises(CacheUnavailable):
        await cache.read([Sku("p")])


# -- the warmer --


class RecordingCache:
    """Records payloads; fails every batch that holds a payload marked ``fail``."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []
        self.failures = 0

    async def apply_payloads(self, payloads: list[Any]) -> Any:
        if any(payload.get("fail") for payload in payloads):
            self.failures += 1
            raise RuntimeError("boom")
        self.payloads.extend(payloads)


async def test_warm_many_decodes_and_skips_what_is_not_json() -> None:
    cache = RecordingCache()
    await warm_many(cache, [b'{"a": 1}', "not json", b"[1]", {"b": 2}])  # type: ignore[arg-type]
    assert cache.payloads == [{"a": 1}, {"b": 2}]
    await warm_many(cache, [{"c": 3}])  # type: ignore[arg-type]
    assert cache.payloads[-1] == {"c": 3}


async def test_the_warmer_agent_survives_a_failing_cache() -> None:
    import faust

    app = faust.App(
        "warmer-unit", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )
    cache = RecordingCache()
    agent = register_warmer(app, "stock-changed", cache, within_s=0.001)  # type: ignore[arg-type]
    assert agent.concurrency == 1
    app.finalize()
    app.flow_control.resume()
    async with agent.test_context() as running:
        await running.put(b'{"fail": true}')
        await wait_for(lambda: cache.failures == 1, within_s=5, what="the failing batch tried")
        await running.put(b'{"x": 2}')
        await wait_for(lambda: cache.payloads, within_s=5, what="the next payload applied")
    assert cache.payloads == [{"x": 2}]


async def test_reads_that_arrive_during_one_go_out_together() -> None:
    class GatedRedis(DownRedis):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()
            self.in_flight = asyncio.Event()
            self.reads: list[list[str]] = []

        async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
            keys = list(args[:numkeys])
            self.reads.append(keys)
            self.in_flight.set()
            await self.gate.wait()
            return ["1\n1|0|1|1|0||0|0|sid|w" if "q" in key else "" for key in keys]

    client = GatedRedis()
    cache = StockCache(
        client,
        ttl_s=300,
        timeout_s=5,
        breaker=CircuitBreaker(5.0),
    )
    first = asyncio.create_task(cache.read([Sku("p")]))
    await client.in_flight.wait()
    waiting = [asyncio.create_task(cache.read([Sku("q"), Sku(f"r{i}")])) for i in range(4)]
    await wait_for(
        lambda: len(cache._reads) == len(waiting), within_s=5, what="the reads queued behind it"
    )
    assert len(client.reads) == 1  # the others wait for the read in flight
    client.gate.set()
    assert await first == [None]
    answers = await asyncio.gather(*waiting)
    assert len(client.reads) == 2  # ...and then went out together, each key once
    assert sorted(client.reads[1]) == sorted(
        [sku_key(Sku("q"))] + [sku_key(Sku(f"r{i}")) for i in range(4)]
    )
    for answer in answers:
        assert answer[0] is not None and answer[0].lines == ("1|0|1|1|0||0|0|sid|w",)
        assert answer[1] is None
