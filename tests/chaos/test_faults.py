"""Fault injection under load: the service keeps working, loses nothing, doubles nothing.

Each scenario runs a stream worker as a subprocess (``inventory serve --role worker``) on topics
of its own, an API (in this process, or a subprocess where the API itself is the victim), and
a continuous mixed load: order events (created, then paid or cancelled) through Kafka and gRPC
clients reserving, committing, releasing, reading and restocking 10 hot SKUs. Then one fault,
then the load goes on, then the books are audited (``driver.audit``): the invariant check is
clean, every order has exactly one final outcome in the ledger that agrees with its result
events and with what its client was told, every order holds all of its items or none.

The stack is shared by the whole session: every fault is undone in a ``finally``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api import server as grpc_api
from service.api.auth import token_digest
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container, build
from service.config import Settings
from service.domain.commands import UpdateStock
from service.domain.values import Sku, StockOperation
from streams.app import ensure_topics
from tests.chaos.driver import (
    DATABASE_COMING_BACK,
    PRUNING,
    Audit,
    EventLoad,
    RpcLoad,
    ServiceProcess,
    audit,
    checks_alive,
    hot_skus,
    processed_events,
    scalar,
    scenario_settings,
    settle,
)
from tests.waiting import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

TOKEN = "chaos-admin-token"
STOCK = 300  # per hot SKU; the restocker adds 20 a second: shortage comes and goes
FAULT_S = 10.0  # how long the broker is paused and PostgreSQL is down
LOAD_AROUND_S = 2.0  # load before and after each fault


@dataclass
class Rig:
    settings: Settings
    container: Container
    worker: ServiceProcess
    events: EventLoad
    rpcs: RpcLoad
    skus: list[str]
    api_target: str

    async def start_load(self) -> None:
        await self.events.start()
        await self.rpcs.start()

    async def stop_load(self) -> None:
        await self.rpcs.stop()
        await self.events.stop()

    async def finish(self, db: AsyncEngine, name: str) -> Audit:
        """Stop the load, wait until everything was processed and published, audit."""
        await self.stop_load()
        await settle(db, self.events, alive=[self.worker])
        result = await audit(db, self.settings, events=self.events, rpcs=[self.rpcs])
        report(name, self.events, self.rpcs, result)
        return result


def report(name: str, events: EventLoad, rpcs: RpcLoad, result: Audit) -> None:
    codes = ", ".join(f"{c} {n}" for c, n in sorted(rpcs.calls.by_code().items()))
    print(
        f"\n[{name}] events {events.sent} ({events.rate:.0f}/s, {events.send_failures} resent), "
        f"rpc {rpcs.rate:.0f}/s ({codes}); {result.summary()}"
    )


async def seed(container: Container, skus: list[str], quantity: int) -> None:
    for sku in skus:
        await container.engine.update_stock(
            UpdateStock(Sku(sku), "default", StockOperation.SET, quantity, "chaos seed")
        )


@asynccontextmanager
async def rig(
    stack: Any,
    tmp_path: Path,
    name: str,
    *,
    rate: float = 80.0,
    clients: int = 12,
    **extra: Any,
) -> AsyncIterator[Rig]:
    settings = scenario_settings(
        stack.overrides, name, admin_token_sha256=[token_digest(TOKEN)], **extra
    )
    skus = hot_skus(name)
    await ensure_topics(settings)
    async with AsyncExitStack() as exits:
        container = await exits.enter_async_context(build(settings))
        await seed(container, skus, STOCK)
        server = await grpc_api.start(settings.model_copy(update={"grpc_port": 0}), container)
        exits.push_async_callback(server.stop, 0)
        await server.set_serving(True)
        worker = ServiceProcess(settings, "worker", tmp_path / "worker.log")
        exits.callback(worker.kill)
        exits.push_async_callback(worker.stop)
        await worker.started()
        target = f"127.0.0.1:{server.port}"
        events = EventLoad(settings, skus, rate=rate, prefix=f"{name}-ev")
        rpcs = RpcLoad(target, skus, clients=clients, admin_token=TOKEN, prefix=f"{name}-rpc")
        exits.push_async_callback(events.abort)
        exits.push_async_callback(rpcs.abort)
        yield Rig(settings, container, worker, events, rpcs, skus, target)


async def events_at_least(db: AsyncEngine, n: int) -> bool:
    return await processed_events(db) >= n


def assert_no_stall_seeks(worker_log: Path) -> None:
    """A fault stops every partition at once: the stall watch (streams/offsets.py) must hold
    still, not take the standstill for records dropped on their way to the agent."""
    seeks = [line for line in worker_log.read_text().splitlines() if "stands at offset" in line]
    assert seeks == [], seeks[:5]


def assert_clean(result: Audit, rpcs: RpcLoad, allowed: set[str]) -> None:
    assert result.problems == [], "\n".join(result.problems[:80])
    assert rpcs.calls.unexpected == [], rpcs.calls.unexpected[:20]
    codes = set(rpcs.calls.by_code())
    assert codes <= allowed, codes - allowed
    assert {"RESERVED", "COMMITTED", "RELEASED"} <= set(result.states), result.states


async def test_worker_killed_mid_batch_and_restarted(
    stack: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    # the pruner runs in the killed worker too (tiny retentions): nothing lost to it either
    async with rig(stack, tmp_path, "kill9", **PRUNING) as r:
        await r.start_load()
        await wait_for(
            lambda: events_at_least(db_engine, 300),
            within_s=60,
            what="300 events processed",
            every_s=0.1,
            ignoring=DATABASE_COMING_BACK,
        )
        before = await processed_events(db_engine)
        r.worker.kill()  # mid-stream: batches are always in flight at this rate
        # Events pile up and the API goes on. The restart waits until the broker has dropped
        # the dead member (session timeout): Tansu can leave a member that joins while a dead
        # one is still in the group without partitions (docs/pitfalls.md, Tansu).
        down_s = max(LOAD_AROUND_S, Settings(**stack.overrides).broker_session_timeout_s + 1)
        await asyncio.sleep(down_s)
        r.worker.start()
        await r.worker.wait_ready()
        await asyncio.sleep(LOAD_AROUND_S)
        result = await r.finish(db_engine, "kill -9 worker")
        print(f"killed after {before} processed events; worker log {r.worker.log_path}")
    assert_clean(result, r.rpcs, {"OK", "FAILED_PRECONDITION"})


async def test_broker_paused_then_resumed(
    stack: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    if stack.broker is None:
        pytest.skip("the broker is external: the test cannot pause it")
    async with rig(stack, tmp_path, "pause") as r:
        await r.start_load()
        await asyncio.sleep(LOAD_AROUND_S)
        calls_before = r.rpcs.ok_calls
        stack.pause_broker()
        try:
            await asyncio.sleep(FAULT_S)
            calls_during = r.rpcs.ok_calls - calls_before
        finally:
            stack.resume_broker()
        await asyncio.sleep(LOAD_AROUND_S)
        result = await r.finish(db_engine, "broker paused")
    assert calls_during > 0, "the API must keep answering while Kafka is down"
    assert_clean(result, r.rpcs, {"OK", "FAILED_PRECONDITION"})
    assert_no_stall_seeks(tmp_path / "worker.log")


async def test_postgres_stopped_then_started(
    stack: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    if stack.postgres is None:
        pytest.skip("PostgreSQL is external: the test cannot stop it")
    async with rig(stack, tmp_path, "pgdown") as r:
        await r.start_load()
        await asyncio.sleep(LOAD_AROUND_S)
        processed_before = await processed_events(db_engine)
        try:
            await asyncio.to_thread(stack.stop_postgres)
            down_at = time.monotonic()
            await asyncio.sleep(FAULT_S)
        finally:
            await asyncio.to_thread(stack.start_postgres)
        up_at = time.monotonic()
        await asyncio.sleep(LOAD_AROUND_S)
        result = await r.finish(db_engine, "postgres down")
        processed = await processed_events(db_engine)
    unavailable_while_down = [t for t in r.rpcs.calls.retryable_at if down_at <= t <= up_at]
    assert unavailable_while_down, "RPCs must answer UNAVAILABLE while the database is down"
    assert r.rpcs.calls.codes.get(("ReserveStock", "DEADLINE_EXCEEDED"), 0) == 0
    assert processed > processed_before  # the worker went on after the restart
    assert_clean(result, r.rpcs, {"OK", "FAILED_PRECONDITION", "UNAVAILABLE"})
    assert_no_stall_seeks(tmp_path / "worker.log")


def cache_fallbacks() -> float:
    return REGISTRY.get_sample_value("inventory_cache_requests_total", {"result": "fallback"}) or 0


async def test_redis_stopped_reads_fall_back_and_writes_go_on(
    stack: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    if stack.redis is None:
        pytest.skip("Redis is external: the test cannot stop it")
    async with rig(stack, tmp_path, "redis") as r:
        quiet = f"{r.skus[0]}-quiet"
        await seed(r.container, [quiet], 50)
        channel = grpc.aio.insecure_channel(r.api_target)
        stub = pb_grpc.InventoryServiceStub(channel)
        admin = (("authorization", f"Bearer {TOKEN}"),)
        try:
            await r.start_load()
            await asyncio.sleep(LOAD_AROUND_S)
            assert (await stub.GetStock(pb.GetStockRequest(product_id=quiet))).total == 50
            fallbacks = cache_fallbacks()
            stack.stop_redis()
            try:
                await asyncio.sleep(1.0)
                # a write during the outage, then reads: answered from PostgreSQL at once
                update = pb.UpdateStockRequest(product_id=quiet, quantity=7, operation=pb.ADD)
                await stub.UpdateStock(update, metadata=admin)
                during = await stub.GetStock(pb.GetStockRequest(product_id=quiet))
                check = await stub.CheckStock(pb.CheckStockRequest(product_id=quiet, quantity=57))
                await asyncio.sleep(3.0)
            finally:
                await asyncio.to_thread(stack.start_redis)
            assert during.total == 57 and check.available
            assert cache_fallbacks() > fallbacks
            await asyncio.sleep(LOAD_AROUND_S)
            result = await r.finish(db_engine, "redis down")
            await assert_cache_agrees(stub, db_engine, r.skus)
        finally:
            await channel.close()
    assert_clean(result, r.rpcs, {"OK", "FAILED_PRECONDITION"})


async def assert_cache_agrees(
    stub: pb_grpc.InventoryServiceStub, db: AsyncEngine, skus: list[str]
) -> None:
    """With Redis back, reads (through the cache) agree with PostgreSQL."""

    async def agrees() -> bool:
        for sku in skus:
            answer = await stub.GetStock(pb.GetStockRequest(product_id=sku))
            total = await scalar(
                db, "SELECT sum(available) FROM stocks WHERE product_id = :p", p=sku
            )
            if answer.available != total:
                return False
        return True

    await wait_for(
        agrees,
        within_s=30,
        what="cached reads agree with the database",
        every_s=0.1,
        ignoring=DATABASE_COMING_BACK,
    )


async def test_api_killed_while_64_clients_reserve(
    stack: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = scenario_settings(
        stack.overrides, "apikill", admin_token_sha256=[token_digest(TOKEN)]
    )
    skus = hot_skus("apikill")
    await ensure_topics(settings)
    async with build(settings) as container:
        await seed(container, skus, 2_000)
    api = ServiceProcess(settings, "api", tmp_path / "api.log")
    worker = ServiceProcess(settings, "worker", tmp_path / "worker.log")
    events = EventLoad(settings, skus, rate=40, prefix="apikill-ev")
    # reserve only, up to 3 items each: "all or nothing" has something to split
    rpcs = RpcLoad(
        api.target, skus, clients=64, channels=4, commit=0, release=0, reads=0, max_items=3,
        prefix="apikill-rpc",
    )  # fmt: skip
    try:
        await asyncio.gather(api.started(), worker.started())
        await events.start()
        await rpcs.start()
        await wait_for(
            lambda: _told_at_least(rpcs, 200),
            within_s=60,
            what="200 reserved orders",
            every_s=0.1,
            alive=checks_alive([api, worker]),
            ignoring=DATABASE_COMING_BACK,
        )
        interrupted = set(rpcs.in_flight_reserves)
        api.kill()
        await asyncio.sleep(1.0)
        api.start()
        await api.wait_ready()
        await asyncio.sleep(LOAD_AROUND_S)
        await rpcs.stop()
        await events.stop()
        await settle(db_engine, events, alive=[worker])
        result = await audit(db_engine, settings, events=events, rpcs=[rpcs])
        report("api kill -9", events, rpcs, result)
        landed = [o for o in interrupted if rpcs.orders[o].duplicate_after_retry]
        print(f"{len(interrupted)} ReserveStock calls in flight at the kill, {len(landed)} of "
              "them had landed (the retry answered duplicate)")  # fmt: skip
        await assert_retry_is_idempotent(api.target, db_engine, rpcs)
    finally:
        await rpcs.abort()
        await events.abort()
        api.kill()
        await worker.stop()
        worker.kill()
    assert len(interrupted) >= 32, "the kill should catch many calls in flight"
    assert result.problems == [], "\n".join(result.problems[:80])
    assert rpcs.calls.unexpected == [], rpcs.calls.unexpected[:20]
    assert set(rpcs.calls.by_code()) <= {"OK", "FAILED_PRECONDITION", "UNAVAILABLE"}
    for order_id in interrupted:
        order = rpcs.orders[order_id]
        assert order.settled and order.told in ("RESERVED", "REFUSED"), order


async def _told_at_least(rpcs: RpcLoad, n: int) -> bool:
    return sum(1 for o in rpcs.orders.values() if o.told == "RESERVED") >= n


async def assert_retry_is_idempotent(target: str, db: AsyncEngine, rpcs: RpcLoad) -> None:
    """Every reserved order, asked again with the same id and items: the same reservation,
    flagged duplicate, and not one unit of stock moves."""
    levels = (
        "SELECT string_agg(id || ':' || available || ':' || reserved, ',' ORDER BY id) FROM stocks"
    )
    before = await scalar(db, levels)
    reserved = [o for o in rpcs.orders.values() if o.told == "RESERVED"]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        for order in reserved:
            again = await stub.ReserveStock(
                pb.ReserveStockRequest(
                    order_id=order.order_id,
                    items=[pb.StockItem(product_id=s, quantity=q) for s, q in order.items],
                ),
                timeout=10,
            )
            assert again.duplicate and again.state == pb.ORDER_STATE_RESERVED, order
    assert await scalar(db, levels) == before
