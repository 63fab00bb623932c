"""The gRPC API end to end: a served process, a Python grpc.aio client, the same PostgreSQL.

In one run, on the embedded stack (free ports, temporary directory):
- ``seed_design_tps``: the seed's design driven by pgbench on the same 10 hot SKUs, best of
  8 and 64 clients (``bench/baseline.py``; the baseline, measured before the server starts);
- ``reserve_orders_per_s``: ReserveStock orders/s (2 items from 10 hot SKUs, unique order
  ids) with 64 concurrent callers against ``inventory serve --role api`` in its own process;
- ``empty_rpc_rps``: grpc.health.v1 Check at 8 in flight on the same server and client, the
  ceiling of the RPC layer on this machine (the client shares the 2 cores);
  ``reserve_over_empty_rpc`` is ReserveStock orders/s over it;
- ``getstock_rps`` / ``getstock_p50_ms`` / ``getstock_p99_ms``: GetStock at 8 in flight.

Prints one JSON line last. Targets (issue 19): ratio >= 1.5 with reserve p99 < 50 ms,
reserve_over_empty_rpc >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from bench.baseline import ratio, seed_design_baseline, seed_hot_stock  # noqa: E402
from bench.stack import bench_stack  # noqa: E402
from service.api.auth import token_digest  # noqa: E402
from service.api.generated import inventory_pb2 as pb  # noqa: E402
from service.api.generated import inventory_pb2_grpc as pb_grpc  # noqa: E402
from service.config import Settings  # noqa: E402
from service.devtools.ports import free_port  # noqa: E402

SKUS = [f"hot-{i}" for i in range(10)]
SERVER_FIELDS = ("database_url", "redis_url", "kafka_bootstrap")


def start_server(
    settings: Settings, grpc_port: int, http_port: int, token: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    for field in SERVER_FIELDS:
        env[f"INVENTORY_{field.upper()}"] = str(getattr(settings, field))
    env.update(
        {
            "INVENTORY_GRPC_HOST": "127.0.0.1",
            "INVENTORY_GRPC_PORT": str(grpc_port),
            "INVENTORY_HTTP_HOST": "127.0.0.1",
            "INVENTORY_HTTP_PORT": str(http_port),
            "INVENTORY_ADMIN_TOKEN_SHA256": json.dumps([token_digest(token)]),
            "INVENTORY_LOG_LEVEL": "WARNING",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--role", "api"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def wait_ready(server: subprocess.Popen[bytes], http_port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readiness", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server never became ready")


async def closed_loop(
    callers: int, seconds: float, call: Callable[[int, int], Awaitable[object]]
) -> tuple[int, float, list[float]]:
    """``callers`` tasks calling back to back for ``seconds``; (calls, elapsed, latencies)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(index, n)
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return len(latencies), time.perf_counter() - started, latencies


def percentile_ms(latencies: list[float], fraction: float) -> float:
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 2)


async def measure(grpc_port: int, token: str, seconds: float, callers: int) -> dict[str, float]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        admin = (("authorization", f"Bearer {token}"),)
        for sku in SKUS:
            request = pb.UpdateStockRequest(
                product_id=sku, quantity=10**12, operation=pb.SET, reason="bench"
            )
            await stub.UpdateStock(request, metadata=admin)

        async def reserve(index: int, n: int) -> object:
            a, b = random.Random(index * 1_000_003 + n).sample(SKUS, 2)
            request = pb.ReserveStockRequest(
                order_id=f"bench-{index}-{n}",
                items=[
                    pb.StockItem(product_id=a, quantity=1),
                    pb.StockItem(product_id=b, quantity=1),
                ],
            )
            return await stub.ReserveStock(request, timeout=30)

        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest()

        async def empty(index: int, n: int) -> object:
            return await health.Check(check, timeout=30)

        async def get_stock(index: int, n: int) -> object:
            return await stub.GetStock(pb.GetStockRequest(product_id=SKUS[n % 10]), timeout=30)

        await closed_loop(8, 1.0, empty)  # warm-up: connections, caches, code paths
        orders, reserve_s, reserve_lat = await closed_loop(callers, seconds, reserve)
        empties, empty_s, _ = await closed_loop(8, seconds / 2, empty)
        reads, read_s, read_lat = await closed_loop(8, seconds / 2, get_stock)
    return {
        "reserve_orders_per_s": round(orders / reserve_s, 1),
        "reserve_p50_ms": percentile_ms(reserve_lat, 0.5),
        "reserve_p99_ms": percentile_ms(reserve_lat, 0.99),
        "empty_rpc_rps": round(empties / empty_s, 1),
        "getstock_rps": round(reads / read_s, 1),
        "getstock_p50_ms": percentile_ms(read_lat, 0.5),
        "getstock_p99_ms": percentile_ms(read_lat, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="ReserveStock")
    parser.add_argument("--baseline-seconds", type=float, default=5, help="pgbench, per side")
    parser.add_argument("--callers", type=int, default=64)
    args = parser.parse_args()
    token = secrets.token_urlsafe(24)
    with bench_stack() as (stack, settings):
        asyncio.run(seed_hot_stock(settings, SKUS))
        baseline = seed_design_baseline(stack, args.baseline_seconds)
        grpc_port, http_port = free_port(), free_port()
        server = start_server(settings, grpc_port, http_port, token)
        try:
            wait_ready(server, http_port)
            figures = asyncio.run(measure(grpc_port, token, args.seconds, args.callers))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(
        json.dumps(
            {
                "bench": "grpc_api",
                "reserve_orders_per_s": figures["reserve_orders_per_s"],
                **baseline,
                "ratio": ratio(figures["reserve_orders_per_s"], baseline),
                "empty_rpc_rps": figures["empty_rpc_rps"],
                "reserve_over_empty_rpc": round(
                    figures["reserve_orders_per_s"] / figures["empty_rpc_rps"], 2
                ),
                "getstock_rps": figures["getstock_rps"],
                "getstock_p50_ms": figures["getstock_p50_ms"],
                "getstock_p99_ms": figures["getstock_p99_ms"],
                "reserve_p50_ms": figures["reserve_p50_ms"],
                "reserve_p99_ms": figures["reserve_p99_ms"],
                "callers": args.callers,
                "items_per_order": 2,
                "targets": {"ratio": 1.5, "reserve_p99_ms": 50, "reserve_over_empty_rpc": 0.5},
            }
        )
    )


if __name__ == "__main__":
    main()
