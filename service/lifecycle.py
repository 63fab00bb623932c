"""``inventory serve``: migrate, build, serve gRPC + HTTP (and the stream worker), drain on signal.

Start-up: HTTP first (``/health`` answers, ``/readiness`` says "starting"), then migrations,
the container, gRPC (roles api/all), the stream worker and the live invariant check (roles
worker/all), then ready.
Shutdown on SIGTERM/SIGINT (or ``stop``): readiness goes false, the gRPC server refuses new
RPCs and gives in-flight ones ``shutdown_grace_s``, the worker stops, the engine drains its
queued and in-flight batches, the pool closes, HTTP stops last.

``supervised``: one of the API processes of ``service/supervisor.py``, which ran the
migrations, serves HTTP for the group and reserved the gRPC port; this process shares that
port (SO_REUSEPORT), refreshes its pool gauges itself (no /metrics of its own) and prints no
grpcurl lines (the supervisor does, once).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any, Protocol

from db import migrate
from service import http
from service import logging as service_logging
from service.bootstrap import Container, build
from service.config import Role, Settings
from service.event_loop import running_loop_name
from service.invariant_monitor import InvariantMonitor

log = logging.getLogger("service.serve")  # the logger name of `inventory serve` in the logs

GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
DEMO_SKU = '"product_id":"prod-123","variant_id":"var-456"'


class Worker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def grpcurl_lines(settings: Settings, port: int, *, tls: bool) -> list[str]:
    """Ready-to-paste calls against the seeded demo stock (prod-123 / var-456)."""
    host = settings.grpc_host if settings.grpc_host not in ("0.0.0.0", "::", "") else "localhost"
    target = f"{host}:{port}"
    flag = ("-insecure" if tls else "-plaintext") + " -emit-defaults"  # show false and 0 fields
    service = "inventory.v1.InventoryService"
    return [
        f"grpcurl {flag} -d '{{{DEMO_SKU}}}' {target} {service}/GetStock",
        f'grpcurl {flag} -d \'{{"order_id":"order-789","items":[{{{DEMO_SKU},'
        f'"quantity":2}}],"ttl_seconds":900}}\' {target} {service}/ReserveStock',
        f'grpcurl {flag} -H "authorization: Bearer $INVENTORY_ADMIN_TOKEN" -d \'{{{DEMO_SKU},'
        f'"quantity":100,"operation":"ADD","reason":"Restocking from supplier"}}\' '
        f"{target} {service}/UpdateStock",
    ]


def _stream_worker(settings: Settings, container: Container) -> Worker | None:
    """The Faust worker, imported only for roles that run it (``--role api`` never loads Kafka)."""
    try:
        from streams.worker import StreamWorker
    except ModuleNotFoundError as exc:
        if exc.name != "streams.worker" or settings.role is Role.WORKER:
            raise
        log.error("streams.worker is missing: serving the API without the stream worker")
        return None
    worker: Worker = StreamWorker(settings, container)
    return worker


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (only the main thread may install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def run(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    supervised: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set); ``ready`` is set once serving."""
    restore_logging = service_logging.configure(settings)
    try:
        await _serve(settings, ready, stop or asyncio.Event(), supervised)
    finally:
        restore_logging()


async def _serve(
    settings: Settings, ready: asyncio.Event | None, stop: asyncio.Event, supervised: bool
) -> None:
    lifecycle = http.Lifecycle()
    async with AsyncExitStack() as stack:
        stack.enter_context(_signals(stop))
        http_server = None
        if not supervised:
            http_server = await http.start(settings, lifecycle)
            stack.push_async_callback(http_server.stop)
            await migrate.upgrade_async(settings.database_url, settings.default_warehouse_id)
        container = await stack.enter_async_context(build(settings))
        if http_server is not None:
            http_server.attach(container.db)
        else:
            stack.enter_context(_pool_gauges(container))

        # the exit stack unwinds in reverse: gRPC stops first, then the worker
        if settings.role in (Role.WORKER, Role.ALL):
            worker = _stream_worker(settings, container)
            if worker is not None:
                await worker.start()
                stack.push_async_callback(worker.stop)
            monitor = InvariantMonitor(settings)
            await monitor.start()
            stack.push_async_callback(monitor.stop)
        grpc_server = None
        if settings.role in (Role.API, Role.ALL):
            from service.api import server as grpc_api

            grpc_server = await grpc_api.start(settings, container, reuse_port=supervised)
            stack.push_async_callback(grpc_server.stop, settings.shutdown_grace_s)

        settle_heap()
        lifecycle.ready()
        if grpc_server is not None:
            await grpc_server.set_serving(True)
        _announce(settings, http_server.port if http_server else None, grpc_server)
        if ready is not None:
            ready.set()

        await stop.wait()
        log.info("draining", extra={"grace_s": settings.shutdown_grace_s})
        lifecycle.drain()
        if grpc_server is not None:
            await grpc_server.set_serving(False)
        # leaving the stack: gRPC stop (grace), worker stop, engine drain + pool close, HTTP stop
    log.info("stopped")


@contextlib.contextmanager
def _pool_gauges(container: Container, every_s: float = 1.0) -> Iterator[None]:
    """Without HTTP of its own (supervised), refresh the pool gauges on a timer instead."""

    async def refresh() -> None:
        while True:
            http.update_pool_gauges(container.db)
            await asyncio.sleep(every_s)

    task = asyncio.create_task(refresh(), name="pool-gauges")
    try:
        yield
    finally:
        task.cancel()


def settle_heap() -> None:
    """Take what start-up built out of the collector's sight, and collect young objects less
    often.

    A worker allocates a few hundred objects per event, almost all freed by reference counting;
    with CPython's default threshold (700) the young generation is scanned every few events,
    and every full collection walks the whole start-up heap (Faust, aiokafka, SQLAlchemy, gRPC)
    again. ``bench/pipeline.py`` gained about 10 % from this; peak RSS did not move.
    ``bench/engine.py`` calls it too, so that its in-process engine runs as the service's does.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def _announce(settings: Settings, http_port: int | None, grpc_server: Any) -> None:
    log.info(
        "ready",
        extra={
            "role": settings.role.value,
            "http_port": http_port,
            "grpc_port": grpc_server.port if grpc_server else None,
            "event_loop": running_loop_name(),
        },
    )
    if grpc_server is None or http_port is None:
        return
    lines = [f"inventory API on port {grpc_server.port}; try:"]
    lines += [
        f"  {line}" for line in grpcurl_lines(settings, grpc_server.port, tls=grpc_server.tls)
    ]
    print("\n".join(lines), file=sys.stdout, flush=True)
