"""``bench/cache.py --processes N``: the same figures against ``serve --role api --processes N``.

The server is a subprocess on the bench stack (cache on), seeded and warmed like the
single-process run. Each figure comes from ``M`` client processes of ``bench/cache.py
--client ... --member``: every concurrent caller has its own channel (TCP connection), all
clients pass a barrier after their warm-up and run the same ``seconds``; their calls/s add up
and their latencies are pooled for p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.cache import client_command, every_item, seed
from service.config import Settings
from service.devtools.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


async def measure_processes(
    settings: Settings, processes: int, clients: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    local = settings.model_copy(
        update={
            "grpc_host": "127.0.0.1",
            "grpc_port": free_port(),
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "cache_enabled": True,
            "log_format": "json",
        }
    )
    await seed_and_warm(local)
    log_path = Path(tempfile.mkstemp(prefix="inventory-bench-api-", suffix=".log")[1])
    server = await start_group(local, processes, log_path)
    try:
        await wait_ready(server, local.http_port, log_path)
        target = f"127.0.0.1:{local.grpc_port}"
        empty = await measure_group("empty", target, seconds, concurrency, clients)
        cached = await measure_group("getstock", target, seconds, concurrency, clients)
        cache_lookups = await cache_requests(local.http_port)
        spread = rpcs_per_process(log_path)
    finally:
        server.send_signal(signal.SIGTERM)
        code = await server.wait()
    print(f"server log: {log_path} (exit {code})", file=sys.stderr)
    ratio = round(cached["rps"] / empty["rps"], 2)
    return {
        "bench": "cache",
        "processes": processes,
        "client_processes": clients,
        "concurrency_per_client": concurrency,
        "connections": clients * concurrency,
        "cached_getstock_rps": cached["rps"],
        "cached_getstock_p50_ms": cached["p50_ms"],
        "cached_getstock_p99_ms": cached["p99_ms"],
        "empty_rpc_rps": empty["rps"],
        "empty_rpc_p99_ms": empty["p99_ms"],
        "ratio": ratio,
        "per_client_rps": {"empty": empty["per_client"], "getstock": cached["per_client"]},
        "cache_lookups": cache_lookups,
        "rpcs_per_process": spread,
        "errors": empty["errors"] + cached["errors"],
        "server_exit": code,
        "target_getstock_met": ratio >= 0.7 and cached["p99_ms"] < 10,
    }


async def seed_and_warm(settings: Settings) -> None:
    """The bench data, and every SKU's entry in Redis (what the servers' cache reads)."""
    from service.bootstrap import build
    from service.cache import CachedStockQueries, build_cache

    async with build(settings) as container:
        await seed(container)
        cache = build_cache(settings)
        try:
            queries = CachedStockQueries(container.db, cache, allow_split=settings.allow_split)
            await queries.check_stock(every_item())
        finally:
            await cache.close()


async def start_group(
    settings: Settings, processes: int, log_path: Path
) -> asyncio.subprocess.Process:
    script = Path(sys.executable).with_name("inventory")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *command,
            "serve",
            "--role",
            "api",
            "--processes",
            str(processes),
            env={**os.environ, **settings.as_env()},
            cwd=ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )


async def wait_ready(
    server: asyncio.subprocess.Process, http_port: int, log_path: Path, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{http_port}/readiness") as reply:
                    if reply.status == 200:
                        return
            except (OSError, aiohttp.ClientError):
                pass
            if server.returncode is not None:
                raise RuntimeError(f"the server exited ({server.returncode}); see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server was not ready; see {log_path}")
            await asyncio.sleep(0.2)


async def measure_group(
    kind: str, target: str, seconds: float, concurrency: int, clients: int
) -> dict[str, Any]:
    """``clients`` client processes, started together after their warm-up; summed calls/s."""
    members = [
        await asyncio.create_subprocess_exec(
            *client_command(kind, target, seconds, concurrency, "--member"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(clients)
    ]
    for member in members:  # the barrier: every client connected and warm
        assert member.stdout is not None
        line = await member.stdout.readline()
        if line.strip() != b"warm":
            raise RuntimeError(f"client {kind}: expected 'warm', got {line!r}")
    for member in members:
        assert member.stdin is not None
        member.stdin.write(b"go\n")
        await member.stdin.drain()
    outputs = await asyncio.gather(*(member.communicate() for member in members))
    figures = []
    for member, (out, _) in zip(members, outputs, strict=True):
        if member.returncode != 0:
            raise RuntimeError(f"client {kind} failed with code {member.returncode}")
        figures.append(json.loads(out.decode().strip().splitlines()[-1]))
    latencies = sorted(latency for f in figures for latency in f["latencies_ms"])
    return {
        "rps": round(sum(f["rps"] for f in figures), 1),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2),
        "calls": len(latencies),
        "errors": sum(f["errors"] for f in figures),
        "per_client": [f["rps"] for f in figures],
    }


def rpcs_per_process(log_path: Path) -> list[float]:
    """InventoryService RPCs (not health checks) each server process answered, warm-ups
    included, from its own counter file:
    how evenly the kernel spread the client connections."""
    from prometheus_client.multiprocess import MultiProcessCollector

    started = next(
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and json.loads(line)["msg"] == "processes started"
    )
    directory = Path(started["metrics_dir"])
    return [
        sum(
            sample.value
            for family in MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")])
            for sample in family.samples
            if sample.name == "inventory_rpc_requests_total"
        )
        for pid in started["pids"]
    ]


async def cache_requests(http_port: int) -> dict[str, float]:
    """inventory_cache_requests_total by result, from the group's one /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{http_port}/metrics") as reply,
    ):
        text = await reply.text()
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inventory_cache_requests_total"
    }
