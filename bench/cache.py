"""GetStock and BulkCheckStock(50) over gRPC with a warm Redis cache versus without the cache.

One run, one embedded stack, two gRPC servers in this process (the same container, queries
through the cache or straight from PostgreSQL). The load comes from a separate Python
process (so client and server do not share a core): 8 concurrent calls on one channel for
``--seconds`` per figure. Baselines from the same run and the same client process:

- ``empty_rpc_rps``: the standard grpc.health.v1 Check on the same server: the ceiling of the
  RPC layer;
- ``redis_get_rps``: a raw redis-py GET loop (8 concurrent, one client): the ceiling of Redis
  as seen from Python.

Each figure is measured in ``--rounds`` slices (default 5) interleaved with the others, so that
a disturbance of the shared machine lands on every figure alike, not on one side of a ratio;
a figure pools its slices (calls over total time, percentiles over every latency).

Then the propagation delay, commit → cache updated, through the real path: UpdateStock
commits an outbox row, the relay publishes it, the warmer agent (Faust) applies it to Redis;
measured from just before the call to the moment the new version is readable in Redis. The
warmer writes into its own Redis database here, so nothing else can update that cache first.

Prints one JSON line last: ``{"bench": "cache", "cached_getstock_rps", ..., "empty_rpc_rps"}``.
Targets (issue 5): cached GetStock >= 0.7 x empty_rpc_rps with p99 < 10 ms; cached
BulkCheckStock(50) >= 3 x uncached.

``--processes N`` (N > 1) measures ``inventory serve --role api --processes N`` instead, a
subprocess on the same stack with the cache on, seeded and warmed the same way: only
``empty`` and cached ``getstock``. One client connection would stay with one server process,
so each concurrent caller has its own channel (``grpc.use_local_subchannel_pool``: its own
TCP connection), and since one Python client process tops out near 2,500 calls/s, the load
comes from ``--client-processes M`` processes (default N) that start together (a barrier
after their warm-up) and run for the same ``--seconds``: their calls/s add up, their
latencies are pooled for the percentiles. Prints ``{"bench": "cache", "processes": N,
"client_processes": M, "cached_getstock_rps", "cached_getstock_p99_ms", "empty_rpc_rps",
"ratio", ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SKUS = 200
WAREHOUSES = (("wh-a", 10), ("wh-b", 20), ("wh-c", 30))
BULK = 50


def sku_name(index: int) -> tuple[str, str]:
    return f"bench-prod-{index}", f"v{index % 3}"


# -- the client process -------------------------------------------------------------------


async def run_client(
    kind: str,
    target: str,
    seconds: float,
    concurrency: int,
    member: bool = False,
    raw: bool = False,
) -> dict[str, Any]:
    """``member``: one of several client processes (``--processes``): a channel (TCP
    connection) per concurrent caller, "warm" on stdout then wait for a line on stdin before
    the clock starts, and every latency in the result (to pool them)."""
    options = [("grpc.use_local_subchannel_pool", 1)] if member else []
    clients = [
        await _client_call(kind, target, options) for _ in range(concurrency if member else 1)
    ]
    latencies: list[float] = []
    errors = 0
    for call, _ in clients:
        for _ in range(50):  # warm-up: connections, caches, code paths
            await call(random.Random(0))
    if member:
        print("warm", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        call = clients[seed % len(clients)][0]
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await call(rng)
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(seed) for seed in range(concurrency)))
    elapsed = time.perf_counter() - started
    for _, close in clients:
        await close()
    latencies.sort()
    figures: dict[str, Any] = {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "calls": len(latencies),
        "errors": errors,
        "seconds": elapsed,
    }
    if member or raw:
        figures["latencies_ms"] = [round(latency * 1000, 3) for latency in latencies]
    return figures


async def _client_call(
    kind: str, target: str, options: list[tuple[str, Any]] | None = None
) -> tuple[Callable[[random.Random], Awaitable[Any]], Callable[[], Awaitable[None]]]:
    if kind == "redis_get":
        from redis.asyncio import Redis

        client = Redis.from_url(target)
        await client.set("bench:key", "x" * 64)

        async def get(rng: random.Random) -> Any:
            return await client.get("bench:key")

        return get, client.aclose

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from service.api.generated import inventory_pb2 as pb
    from service.api.generated import inventory_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(target, options=options)
    stub = pb_grpc.InventoryServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)

    async def empty(rng: random.Random) -> Any:
        return await health.Check(health_pb2.HealthCheckRequest(service=""))

    async def get_stock(rng: random.Random) -> Any:
        product, variant = sku_name(rng.randrange(SKUS))
        return await stub.GetStock(pb.GetStockRequest(product_id=product, variant_id=variant))

    async def bulk(rng: random.Random) -> Any:
        items = [
            pb.StockItem(product_id=product, variant_id=variant, quantity=1)
            for product, variant in (sku_name(i) for i in rng.sample(range(SKUS), BULK))
        ]
        return await stub.BulkCheckStock(pb.BulkCheckStockRequest(items=items))

    calls = {"empty": empty, "getstock": get_stock, "bulk50": bulk}
    return calls[kind], channel.close


def client_command(
    kind: str, target: str, seconds: float, concurrency: int, *flags: str
) -> list[str]:
    """The command line of a client process of this bench."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        kind,
        "--target",
        target,
        "--seconds",
        str(seconds),
        "--concurrency",
        str(concurrency),
        *flags,
    ]


async def measure(kind: str, target: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Run one figure in a fresh client process; its JSON is the last line it prints."""
    process = await asyncio.create_subprocess_exec(
        *client_command(kind, target, seconds, concurrency, "--raw"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"client {kind} failed with code {process.returncode}")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


def pooled(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure from its slices: calls over time, percentiles over every latency."""
    latencies = sorted(latency for part in slices for latency in part["latencies_ms"])
    seconds = sum(part["seconds"] for part in slices)
    return {
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "calls": len(latencies),
        "errors": sum(part["errors"] for part in slices),
        "slices_rps": [part["rps"] for part in slices],
    }


# -- the server process -------------------------------------------------------------------


async def serve_and_measure(
    settings: Any, seconds: float, concurrency: int, rounds: int
) -> dict[str, Any]:
    from service.api import server as grpc_api
    from service.bootstrap import build
    from service.cache import CachedStockQueries, build_cache
    from service.queries import StockQueries

    local = settings.model_copy(update={"grpc_host": "127.0.0.1", "grpc_port": 0})
    async with build(local) as container:
        await seed(container)
        cache = build_cache(local)
        cached_queries = CachedStockQueries(container.db, cache, allow_split=local.allow_split)
        plain_queries = StockQueries(container.db, allow_split=local.allow_split)
        await cached_queries.check_stock(every_item())  # warm: one fill for every SKU
        servers = {
            "cached": await grpc_api.start(local, replace(container, queries=cached_queries)),
            "uncached": await grpc_api.start(local, replace(container, queries=plain_queries)),
        }
        for server in servers.values():
            await server.set_serving(True)
        try:
            cached = f"127.0.0.1:{servers['cached'].port}"
            uncached = f"127.0.0.1:{servers['uncached'].port}"
            runs = {
                "empty": ("empty", cached),
                "cached_getstock": ("getstock", cached),
                "uncached_getstock": ("getstock", uncached),
                "cached_bulk50": ("bulk50", cached),
                "uncached_bulk50": ("bulk50", uncached),
                "redis_get": ("redis_get", local.redis_url),
            }
            slices: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
            for _ in range(rounds):  # interleaved: a disturbance hits every figure alike
                for name, (kind, target) in runs.items():
                    slices[name].append(await measure(kind, target, seconds / rounds, concurrency))
            figures = {name: pooled(parts) for name, parts in slices.items()}
            figures["propagation"] = await propagation(local, container)
        finally:
            for server in servers.values():
                await server.stop(0)
            await cache.close()
    return figures


def every_item() -> list[Any]:
    from service.domain.values import Item, Sku

    return [Item(Sku(*sku_name(index)), 1) for index in range(SKUS)]


async def seed(container: Any) -> None:
    from sqlalchemy import text

    from service.domain import validation as v

    async with container.db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO warehouses (id, name, priority, active) VALUES (:i, :i, :p, true) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            [{"i": wid, "p": priority} for wid, priority in WAREHOUSES],
        )
    commands = [
        v.update_stock(
            product_id=product,
            variant_id=variant,
            warehouse_id=warehouse,
            operation="SET",
            quantity=1_000 + index,
            reason="bench",
            limits=container.limits,
            default_warehouse_id=container.settings.default_warehouse_id,
        )
        for index in range(SKUS)
        for product, variant in [sku_name(index)]
        for warehouse, _ in WAREHOUSES
    ]
    await container.engine.execute_many(commands)


async def propagation(settings: Any, container: Any, samples: int = 100) -> dict[str, Any]:
    """Commit → readable in Redis through outbox, relay, Kafka and the warmer agent."""
    from service.cache import build_cache, stock_key
    from service.domain import validation as v
    from service.domain.values import Sku
    from streams.app import create_app, ensure_topics
    from streams.outbox import OutboxRelay
    from streams.warmer import register_warmer

    base, _, _ = settings.redis_url.rpartition("/")
    isolated = settings.model_copy(
        update={"redis_url": f"{base}/1", "app_id": f"inventory-bench-cache-{os.getpid()}"}
    )
    await ensure_topics(isolated, (isolated.topic_stock_changed,))
    warmer_cache = build_cache(isolated.model_copy(update={"cache_timeout_ms": 1_000}))
    app = create_app(isolated)
    register_warmer(app, isolated.topic_stock_changed, warmer_cache)
    relay = OutboxRelay(isolated)
    await relay.start()
    await app.start()
    product, variant = sku_name(0)
    key = stock_key(Sku(product, variant), WAREHOUSES[0][0])
    command = v.update_stock(
        product_id=product,
        variant_id=variant,
        warehouse_id=WAREHOUSES[0][0],
        operation="ADD",
        quantity=1,
        reason="bench propagation",
        limits=container.limits,
        default_warehouse_id=container.settings.default_warehouse_id,
    )

    async def one(timeout_s: float) -> float:
        started = time.perf_counter()
        level = await container.engine.update_stock(command)  # its commit wakes the relay
        while time.perf_counter() - started < timeout_s:
            version = await warmer_cache.client.hget(key, "version")
            if version is not None and int(version) >= level.version:
                return time.perf_counter() - started
            await asyncio.sleep(0.001)
        raise TimeoutError("the warmer did not apply the event")

    try:
        await one(timeout_s=90)  # the consumer group forms, the agent gets its partitions
        delays = sorted([await one(timeout_s=30) for _ in range(samples)])
    finally:
        await app.stop()
        await relay.stop()
        await warmer_cache.client.flushdb()
        await warmer_cache.close()
    return {
        "p50_ms": round(delays[len(delays) // 2] * 1000, 1),
        "p99_ms": round(delays[int(len(delays) * 0.99)] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
        "samples": samples,
    }


def report(figures: dict[str, Any], concurrency: int) -> dict[str, Any]:
    empty = figures["empty"]["rps"]
    cached, uncached = figures["cached_getstock"], figures["uncached_getstock"]
    bulk, plain_bulk = figures["cached_bulk50"], figures["uncached_bulk50"]
    getstock_ratio = round(cached["rps"] / empty, 2)
    bulk_ratio = round(bulk["rps"] / plain_bulk["rps"], 2)
    return {
        "bench": "cache",
        "cached_getstock_rps": cached["rps"],
        "cached_getstock_p50_ms": cached["p50_ms"],
        "cached_getstock_p99_ms": cached["p99_ms"],
        "uncached_getstock_rps": uncached["rps"],
        "uncached_getstock_p50_ms": uncached["p50_ms"],
        "uncached_getstock_p99_ms": uncached["p99_ms"],
        "cached_bulk50_rps": bulk["rps"],
        "cached_bulk50_p50_ms": bulk["p50_ms"],
        "cached_bulk50_p99_ms": bulk["p99_ms"],
        "uncached_bulk50_rps": plain_bulk["rps"],
        "uncached_bulk50_p50_ms": plain_bulk["p50_ms"],
        "uncached_bulk50_p99_ms": plain_bulk["p99_ms"],
        "redis_get_rps": figures["redis_get"]["rps"],
        "empty_rpc_rps": empty,
        "empty_rpc_p99_ms": figures["empty"]["p99_ms"],
        "propagation_p50_ms": figures["propagation"]["p50_ms"],
        "propagation_p99_ms": figures["propagation"]["p99_ms"],
        "propagation_max_ms": figures["propagation"]["max_ms"],
        "errors": sum(f.get("errors", 0) for f in figures.values()),
        "concurrency": concurrency,
        "ratio": getstock_ratio,
        "bulk_ratio": bulk_ratio,
        "target_getstock_met": getstock_ratio >= 0.7 and cached["p99_ms"] < 10,
        "target_bulk_met": bulk_ratio >= 3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent calls per client")
    parser.add_argument(
        "--processes", type=int, default=1, help="N > 1: measure `serve --processes N`"
    )
    parser.add_argument(
        "--client-processes", type=int, default=None, help="with --processes: default N"
    )
    parser.add_argument("--client", choices=["empty", "getstock", "bulk50", "redis_get"])
    parser.add_argument("--target")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved slices per figure (--seconds in all)"
    )
    parser.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        figures = asyncio.run(
            run_client(
                args.client, args.target, args.seconds, args.concurrency, args.member, args.raw
            )
        )
        print(json.dumps(figures))
        return

    import logging

    from bench.stack import bench_stack

    logging.basicConfig(level=logging.WARNING)
    if args.processes > 1:
        from bench.cache_processes import measure_processes

        clients = args.client_processes or args.processes
        with bench_stack() as (_, settings):
            result = asyncio.run(
                measure_processes(settings, args.processes, clients, args.seconds, args.concurrency)
            )
        print(json.dumps(result))
        return
    with bench_stack() as (_, settings):
        figures = asyncio.run(
            serve_and_measure(settings, args.seconds, args.concurrency, args.rounds)
        )
    print(json.dumps({"figures": figures}), file=sys.stderr)
    print(json.dumps(report(figures, args.concurrency)))


if __name__ == "__main__":
    main()
