"""HTTP on ``http_port``: ``/health`` (alive), ``/readiness`` (able to serve), ``/metrics``.

Readiness: PostgreSQL answers ``SELECT 1`` and its migrations are at head, the process is
neither starting nor draining, and, when this process runs only the stream worker, Kafka is
reachable. Redis (and Kafka for the API roles) is reported, never decisive: the API keeps
working without them (docs/architecture.md, first paragraph; docs/cache.md). Probes use their
own connections (no pool, short timeouts), so a probe never waits behind traffic nor leaves a
pool connection half used.

Under ``serve --processes N`` the supervisor serves these for its group: its ``Lifecycle``
(``service/process_group.py``) is ready when every process is, and ``alive`` while each runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from db import migrate
from service import metrics
from service.config import Role, Settings

log = logging.getLogger("service.http")

PROBE_TIMEOUT_S = 1.0


class Phase(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"


class Lifecycle:
    """Where the process is in its life; only READY is ready."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        metrics.READY.set(0)

    def ready(self) -> None:
        self.phase = Phase.READY
        metrics.READY.set(1)

    def drain(self) -> None:
        self.phase = Phase.DRAINING
        metrics.READY.set(0)

    def alive(self) -> bool:
        """False when part of the service died (a supervisor's child); one process: always."""
        return True

    def details(self) -> dict[str, Any]:
        """Extra fields of /health and /readiness (a supervisor lists its processes)."""
        return {}


def probe_engine(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        poolclass=NullPool,
        connect_args={
            "timeout": timeout_s,
            "server_settings": {
                "statement_timeout": str(int(timeout_s * 1000)),
                "application_name": f"{settings.app_id}-probe",
            },
        },
    )


class Probes:
    def __init__(self, settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout = timeout_s
        self._db = probe_engine(settings, timeout_s)
        self._redis: aioredis.Redis | None = None
        if settings.cache_enabled:
            self._redis = aioredis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )

    async def close(self) -> None:
        await self._db.dispose()
        if self._redis is not None:
            await self._redis.aclose()

    async def postgres(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._db.connect() as connection:
                    await connection.execute(text("SELECT 1"))
                at_head = await asyncio.wait_for(migrate.at_head(self._db), self._timeout)
        except Exception as exc:
            return {"postgres": "down", "migrations": "unknown", "error": type(exc).__name__}
        return {"postgres": "up", "migrations": "at_head" if at_head else "behind"}

    async def redis(self) -> str:
        if self._redis is None:
            return "disabled"
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except Exception:
            return "down"
        return "up"

    async def kafka(self) -> str:
        """A TCP connect to a bootstrap server: cheap, and enough to tell 'unreachable'."""
        if self._settings.role is Role.API:
            return "not_used"
        for server in self._settings.kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                async with asyncio.timeout(self._timeout):
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            except (OSError, TimeoutError, ValueError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return "up"
        return "down"


async def readiness(
    probes: Probes, lifecycle: Lifecycle, role: Role
) -> tuple[bool, dict[str, Any]]:
    database, redis_state, kafka_state = await asyncio.gather(
        probes.postgres(), probes.redis(), probes.kafka()
    )
    ready = (
        lifecycle.phase is Phase.READY
        and lifecycle.alive()
        and database["postgres"] == "up"
        and database["migrations"] == "at_head"
        and (role is not Role.WORKER or kafka_state == "up")
    )
    metrics.READY.set(1 if ready else 0)  # the InventoryNotReady alert reads this gauge
    body = {
        "ready": ready,
        "phase": lifecycle.phase.value,
        **database,
        "redis": redis_state,
        "kafka": kafka_state,
        **lifecycle.details(),
    }
    return ready, body


def update_pool_gauges(db: AsyncEngine | None) -> None:
    if db is None:
        return
    pool = db.sync_engine.pool
    checked_out = getattr(pool, "checkedout", None)
    size = getattr(pool, "size", None)
    if callable(checked_out):
        metrics.DB_POOL_IN_USE.set(checked_out())
    if callable(size):
        metrics.DB_POOL_SIZE.set(size())


@dataclass
class PoolRef:
    """The service's engine, whose pool /metrics reports; set once the pool exists."""

    db: AsyncEngine | None = None


def create_app(
    settings: Settings,
    lifecycle: Lifecycle,
    probes: Probes,
    pool: PoolRef,
    registry: CollectorRegistry = REGISTRY,
) -> web.Application:
    async def health_handler(_: web.Request) -> web.Response:
        alive = lifecycle.alive()
        body = {"status": "alive" if alive else "dead", "phase": lifecycle.phase.value}
        return web.json_response({**body, **lifecycle.details()}, status=200 if alive else 503)

    async def readiness_handler(_: web.Request) -> web.Response:
        started = time.perf_counter()
        ready, body = await readiness(probes, lifecycle, settings.role)
        body["probe_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_handler(_: web.Request) -> web.Response:
        update_pool_gauges(pool.db)
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/health", health_handler)
    app.router.add_get("/readiness", readiness_handler)
    app.router.add_get("/metrics", metrics_handler)
    return app


@dataclass
class HttpServer:
    runner: web.AppRunner
    probes: Probes
    pool: PoolRef
    port: int

    def attach(self, db: AsyncEngine) -> None:
        """Report this engine's pool in /metrics (the HTTP server starts before the pool)."""
        self.pool.db = db

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.probes.close()


async def start(
    settings: Settings,
    lifecycle: Lifecycle,
    db: AsyncEngine | None = None,
    *,
    registry: CollectorRegistry = REGISTRY,
) -> HttpServer:
    """Serve on ``settings.http_host:http_port`` (0 picks a free port); /metrics renders
    ``registry`` (a supervisor passes one that reads every process's metrics)."""
    probes = Probes(settings)
    pool = PoolRef(db)
    app = create_app(settings, lifecycle, probes, pool, registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port, reuse_port=False)
    await site.start()
    port = int(runner.addresses[0][1]) if runner.addresses else settings.http_port
    log.info("http listening", extra={"port": port})
    return HttpServer(runner, probes, pool, port)
