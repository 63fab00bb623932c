"""HTTP health, readiness and metrics; ``lifecycle.run`` start-up, drain and the api role."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.seed import seed_demo
from service import http, lifecycle
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container
from service.config import Role, Settings
from service.devtools.ports import free_port
from service.devtools.stack import EmbeddedStack
from tests.http_client import get
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
WITHIN_S = 15.0  # a bound for a broken test, not a figure under test


async def wait_for_readiness(port: int, status: int) -> dict[str, object]:
    """The body of the first /readiness answer with this status."""
    last: dict[str, object] = {}

    async def answered() -> dict[str, object] | None:
        code, body = await get(port, "/readiness")
        last.update(code=code, body=body)
        return dict(json.loads(body)) if code == status else None

    return await wait_for(
        answered,
        within_s=WITHIN_S,
        what=f"/readiness answering {status}",
        every_s=0.1,
        diagnose=lambda: f"last {last}",
    )


@pytest.fixture
async def http_server(
    container: Container,
) -> AsyncIterator[tuple[http.HttpServer, http.Lifecycle]]:
    settings = container.settings.model_copy(update={"http_host": "127.0.0.1", "http_port": 0})
    lifecycle = http.Lifecycle()
    server = await http.start(settings, lifecycle, container.db)
    try:
        yield server, lifecycle
    finally:
        await server.stop()


async def test_health_readiness_and_metrics(
    http_server: tuple[http.HttpServer, http.Lifecycle],
) -> None:
    server, lifecycle = http_server
    assert (await get(server.port, "/health"))[0] == 200

    starting = await wait_for_readiness(server.port, 503)
    assert starting["phase"] == "starting"
    lifecycle.ready()
    body = await wait_for_readiness(server.port, 200)
    assert body["postgres"] == "up" and body["migrations"] == "at_head"
    assert body["redis"] == "up" and body["kafka"] == "up"

    status, metrics_text = await get(server.port, "/metrics")
    assert status == 200
    for name in (
        "inventory_rpc_requests_total",
        "inventory_rpc_seconds",
        "inventory_engine_batch_size",
        "inventory_engine_batch_seconds",
        "inventory_reservation_outcomes_total",
        "inventory_db_pool_connections_in_use",
        "inventory_db_pool_size 10.0",
        "inventory_ready 1.0",
    ):
        assert name in metrics_text, name

    lifecycle.drain()
    draining = await wait_for_readiness(server.port, 503)
    assert draining["phase"] == "draining" and draining["postgres"] == "up"
    assert (await get(server.port, "/health"))[0] == 200


async def test_readiness_follows_postgres(
    stack: EmbeddedStack, http_server: tuple[http.HttpServer, http.Lifecycle]
) -> None:
    server, lifecycle = http_server
    lifecycle.ready()
    await wait_for_readiness(server.port, 200)
    await asyncio.to_thread(stack.stop_postgres)
    try:
        down = await wait_for_readiness(server.port, 503)
        assert down["postgres"] == "down" and down["phase"] == "ready"
        assert (await get(server.port, "/health"))[0] == 200
    finally:
        await asyncio.to_thread(stack.start_postgres)
    up = await wait_for_readiness(server.port, 200)
    assert up["postgres"] == "up"


async def test_migrations_behind_head_is_not_ready(
    settings: Settings, http_server: tuple[http.HttpServer, http.Lifecycle]
) -> None:
    server, lifecycle = http_server
    lifecycle.ready()
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            head = (
                await conn.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one()
            await conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        try:
            behind = await wait_for_readiness(server.port, 503)
            assert behind["migrations"] == "behind"
        finally:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    finally:
        await engine.dispose()
    await wait_for_readiness(server.port, 200)


async def test_api_role_reports_kafka_unused(container: Container) -> None:
    settings = container.settings.model_copy(
        update={"http_host": "127.0.0.1", "http_port": 0, "role": Role.API}
    )
    lifecycle = http.Lifecycle()
    lifecycle.ready()
    server = await http.start(settings, lifecycle, container.db)
    try:
        body = await wait_for_readiness(server.port, 200)
        assert body["kafka"] == "not_used"
    finally:
        await server.stop()


# -- lifecycle.run: start-up, drain --


def serve_settings(settings: Settings, **extra: object) -> Settings:
    update = {
        "grpc_host": "127.0.0.1",
        "grpc_port": free_port(),
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "role": Role.API,
        "db_lock_timeout_ms": 30_000,
        **extra,
    }
    return settings.model_copy(update=update)


async def test_drain_lets_in_flight_rpcs_finish(settings: Settings, db_engine: object) -> None:
    """Hold the stock row lock so ReserveStock calls hang in the engine, ask run() to stop,
    see readiness go false, release the lock: every in-flight call completes OK."""
    config = serve_settings(settings)
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    await seed_demo(engine, settings.default_warehouse_id)
    ready, stop = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(lifecycle.run(config, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 60)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{config.grpc_port}")
    stub = pb_grpc.InventoryServiceStub(channel)
    try:
        async with engine.connect() as blocker:
            transaction = await blocker.begin()
            await blocker.execute(
                text("SELECT 1 FROM stocks WHERE product_id = 'prod-456' FOR UPDATE")
            )
            calls = [asyncio.ensure_future(reserve_one(stub, f"drain-{n}")) for n in range(5)]
            await wait_for_lock_waiters(engine)
            stop.set()
            draining = await wait_for_readiness(config.http_port, 503)
            assert draining["phase"] == "draining"
            await transaction.rollback()
        answers = await asyncio.gather(*calls)
        assert [a.state for a in answers] == [pb.ORDER_STATE_RESERVED] * 5
        await asyncio.wait_for(running, 60)
    finally:
        stop.set()
        await channel.close()
        await asyncio.wait_for(running, 60)
        await engine.dispose()
    async with create_async_engine(settings.database_url, poolclass=NullPool).connect() as conn:
        reserved = (
            await conn.execute(
                text("SELECT count(*) FROM reservations WHERE order_id LIKE 'drain-%'")
            )
        ).scalar_one()
    assert reserved == 5


async def reserve_one(stub: pb_grpc.InventoryServiceStub, order_id: str) -> pb.ReserveStockResponse:
    request = pb.ReserveStockRequest(
        order_id=order_id, items=[pb.StockItem(product_id="prod-456", quantity=1)]
    )
    return await stub.ReserveStock(request, timeout=60)


async def wait_for_lock_waiters(engine: object) -> None:
    async def waiting() -> int:
        async with engine.connect() as conn:  # type: ignore[attr-defined]
            return int(
                (
                    await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                ).scalar_one()
            )

    await wait_for(waiting, within_s=WITHIN_S, what="the engine waiting on the held lock")


SIGTERM_SCRIPT = """
import asyncio, os, signal, sys
from service import lifecycle
from service.config import Settings

async def main():
    ready = asyncio.Event()
    task = asyncio.create_task(lifecycle.run(Settings(), ready=ready))
    await ready.wait()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 60)

asyncio.run(main())
loaded = sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'aiokafka', 'kafka', 'streams'})
print('KAFKA-MODULES', loaded)
"""


def test_api_role_serves_without_kafka_and_exits_on_sigterm(settings: Settings) -> None:
    config = serve_settings(settings, kafka_bootstrap="127.0.0.1:1")  # nothing listens there
    env = {**os.environ, "INVENTORY_LOG_LEVEL": "WARNING"}
    for field in (
        "database_url",
        "redis_url",
        "kafka_bootstrap",
        "grpc_host",
        "grpc_port",
        "http_host",
        "http_port",
        "role",
    ):
        env[f"INVENTORY_{field.upper()}"] = str(getattr(config, field))
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "KAFKA-MODULES []" in done.stdout
    assert 'grpcurl -plaintext -emit-defaults -d \'{"product_id":"prod-123"' in done.stdout
    assert f"127.0.0.1:{config.grpc_port} inventory.v1.InventoryService/GetStock" in done.stdout
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert all("level" in entry and "msg" in entry for entry in logged)
