"""GetStock ``as_of``: the levels at a past instant, rebuilt from the movement ledger.

The property: random histories of reserve, commit, release, expire, UpdateStock (ADD,
SUBTRACT, SET) and SetStockPolicy on a few SKUs in two warehouses, through the engine and
real PostgreSQL, one step at a time. Between steps, now and then, the present levels are
read (uncached) and the database's clock is noted; at the end GetStock ``as_of`` each noted
instant answers exactly the levels read then. Exact because the steps run one after the
other: every transaction before a noted instant started before it, every one after it
started after it (``clock_timestamp()`` is read between them).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.stock_history import levels_at
from service.api import server as grpc_api
from service.api.auth import AdminAuth
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container
from service.domain import validation as v
from service.domain.errors import InvalidArgument, InventoryError, NotFound
from service.domain.results import StockView
from service.domain.values import OrderState, Sku
from service.queries import AS_OF_CLOCK_SKEW, StockQueries

pytestmark = pytest.mark.stack

SKUS = [Sku("hist-a"), Sku("hist-b"), Sku("hist-c", "v1")]
WAREHOUSES = ["default", "wh-2"]
STEPS = 240


async def add_warehouse(db: AsyncEngine, warehouse_id: str, priority: int) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO warehouses (id, name, priority, active) VALUES (:i, :i, :p, true)"),
            {"i": warehouse_id, "p": priority},
        )


async def db_clock(db: AsyncEngine) -> datetime:
    async with db.connect() as conn:
        instant: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    return instant


async def stock(
    container: Container, product_id: str, operation: str, quantity: int, warehouse: str = "default"
) -> None:
    await container.engine.update_stock(
        v.update_stock(
            product_id=product_id,
            variant_id=None,
            warehouse_id=warehouse,
            operation=operation,
            quantity=quantity,
            reason="test",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


def shape(view: StockView | None) -> tuple[Any, ...]:
    """What ``as_of`` rebuilds: each row's levels, in order, and their sums."""
    if view is None:  # no stock row then: the historical answer is empty
        return ((), 0, 0, 0)
    rows = tuple(
        (level.stock_id, level.warehouse_id, level.available, level.reserved, level.total)
        for level in view.warehouses
    )
    return (rows, view.available, view.reserved, view.total)


async def present(reads: StockQueries, sku: Sku, warehouse_id: str | None) -> StockView | None:
    try:
        return await reads.get_stock(sku, warehouse_id)
    except NotFound:
        return None


def update(container: Container, rng: random.Random) -> Any:
    sku = rng.choice(SKUS)
    operation = rng.choice(["ADD", "ADD", "SUBTRACT", "SET"])
    return v.update_stock(
        product_id=sku.product_id,
        variant_id=sku.variant_id,
        warehouse_id=rng.choice(WAREHOUSES),
        operation=operation,
        quantity=rng.randint(0, 30) if operation == "SET" else rng.randint(1, 15),
        reason="history",
        limits=container.limits,
        default_warehouse_id="default",
    )


@pytest.mark.parametrize("seed", [11, 29])
async def test_as_of_answers_every_snapshot_of_a_random_history(
    container: Container, seed: int
) -> None:
    await add_warehouse(container.db, "wh-2", 200)
    rng = random.Random(seed)
    engine, limits = container.engine, container.limits
    reads = StockQueries(container.db)  # the uncached reads: the truth a snapshot records
    held: list[str] = []  # RESERVED orders, held for the default ttl: commit or release them
    lapsing: dict[str, float] = {}  # RESERVED orders held for 1 s -> when the hold lapses
    snapshots: list[tuple[datetime, dict[tuple[Sku, str | None], StockView | None]]] = []
    done: Counter[str] = Counter()  # the steps that wrote something, by kind

    async def snapshot() -> None:
        instant = await db_clock(container.db)
        seen = {
            (sku, where): await present(reads, sku, where)
            for sku in SKUS
            for where in (None, *WAREHOUSES)
        }
        snapshots.append((instant, seen))

    await snapshot()  # before any movement
    for step in range(STEPS):
        roll = rng.random()
        try:
            if roll < 0.35:
                command = update(container, rng)
                await engine.update_stock(command)
                done[command.operation.value] += 1
            elif roll < 0.6:
                order = f"o-{seed}-{step}"
                lines = [
                    {
                        "product_id": sku.product_id,
                        "variant_id": sku.variant_id,
                        "quantity": rng.randint(1, 6),
                    }
                    for sku in rng.sample(SKUS, rng.randint(1, 2))
                ]
                short = rng.random() < 0.4
                await engine.reserve(v.reserve(order, lines, 1 if short else None, limits))
                if short:
                    lapsing[order] = time.monotonic() + 1.1
                else:
                    held.append(order)
                done["RESERVE"] += 1
            elif roll < 0.72 and held:
                order = held.pop(rng.randrange(len(held)))
                await engine.commit(v.commit(order, limits))
                done["COMMIT"] += 1
            elif roll < 0.84 and held:
                order = held.pop(rng.randrange(len(held)))
                await engine.release(v.release(order, "history", limits))
                done["RELEASE"] += 1
            elif roll < 0.94:
                due = [o for o, lapse in lapsing.items() if lapse <= time.monotonic()]
                if due:
                    for order in due:
                        del lapsing[order]
                    results = await engine.expire(due)
                    assert {r.state for r in results} == {OrderState.EXPIRED}
                    done["EXPIRE"] += len(results)
            else:
                sku = rng.choice(SKUS)
                await engine.set_policy(
                    v.set_stock_policy(
                        product_id=sku.product_id,
                        variant_id=sku.variant_id,
                        warehouse_id=rng.choice(WAREHOUSES),
                        safety_stock=rng.randint(0, 3),
                        backorder_limit=rng.choice([0, 0, 5]),
                        limits=limits,
                        default_warehouse_id="default",
                    )
                )
                done["POLICY"] += 1
        except InventoryError:
            pass  # refused (not enough stock, unknown row, ...): nothing written
        if rng.random() < 0.12:
            await snapshot()
        if step % 60 == 59:
            await asyncio.sleep(0.4)  # let some 1 s holds lapse for the expiries
    await snapshot()

    assert len(snapshots) > 10
    kinds = {"ADD", "SUBTRACT", "SET", "RESERVE", "COMMIT", "RELEASE", "EXPIRE", "POLICY"}
    assert set(done) == kinds, done  # the history had every kind of step
    assert any(view and view.reserved for _, seen in snapshots for view in seen.values())
    for instant, seen in snapshots:
        for (sku, where), expected in seen.items():
            # through the container's queries, cached or not: as_of never reads the cache
            answer = await container.queries.get_stock_as_of(sku, where, instant)
            assert shape(answer) == shape(expected), (instant, sku, where)
            assert all(level.sellable == level.available for level in answer.warehouses)


async def test_as_of_never_reads_the_cache(container: Container, monkeypatch: Any) -> None:
    await stock(container, "cached", "SET", 9)
    instant = await db_clock(container.db)

    async def no_levels(*_: Any) -> Any:
        raise AssertionError("as_of read the present levels (the cache's source)")

    monkeypatch.setattr(container.queries, "_levels", no_levels)
    view = await container.queries.get_stock_as_of(Sku("cached"), None, instant)
    assert (view.available, view.reserved, view.total) == (9, 0, 9)


async def test_out_of_order_writers_answer_the_row_as_last_applied(
    container: Container, db_engine: AsyncEngine
) -> None:
    """Two transactions write one row out of their start order: the earlier-started one
    waited and wrote last, on top of the other's figures. From the later start on, the
    answer is the row as last applied (the current one), not the figures it overwrote."""
    await stock(container, "race", "SET", 10)
    insert = text(
        "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, quantity, "
        "available_after, reserved_after, total_after, actor) "
        "SELECT id, product_id, warehouse_id, 'ADD', :q, :a, 0, :a, 'test' FROM stocks "
        "WHERE product_id = 'race'"
    )
    async with db_engine.connect() as early, db_engine.connect() as late:
        await early.execute(text("SELECT now()"))  # the early transaction starts
        await asyncio.sleep(0.01)
        await late.execute(text("SELECT now()"))  # the late one starts, writes first
        await late.execute(insert, {"q": 1, "a": 11})
        await late.commit()
        await early.execute(insert, {"q": 2, "a": 13})  # builds on 11
        await early.commit()
    after = await db_clock(db_engine)
    async with db_engine.connect() as conn:
        levels = await levels_at(conn, Sku("race"), None, after, AS_OF_CLOCK_SKEW)
    assert [level.available for level in levels.levels] == [13]


# -- over gRPC --


@pytest.fixture
async def stub(container: Container) -> AsyncIterator[pb_grpc.InventoryServiceStub]:
    settings = container.settings.model_copy(update={"grpc_host": "127.0.0.1", "grpc_port": 0})
    server = await grpc_api.start(settings, container, auth=AdminAuth([]))
    await server.set_serving(True)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.InventoryServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


def as_of_request(product_id: str, at: datetime, **fields: Any) -> pb.GetStockRequest:
    request = pb.GetStockRequest(product_id=product_id, **fields)
    request.as_of.FromDatetime(at)
    return request


async def test_as_of_over_grpc(container: Container, stub: pb_grpc.InventoryServiceStub) -> None:
    await add_warehouse(container.db, "wh-2", 200)
    before = await db_clock(container.db)
    await stock(container, "grpc-sku", "ADD", 5)
    between = await db_clock(container.db)
    await stock(container, "grpc-sku", "ADD", 7, warehouse="wh-2")
    await container.engine.reserve(
        v.reserve("grpc-o", [{"product_id": "grpc-sku", "quantity": 2}], None, container.limits)
    )

    # before any movement: the SKU is known, and had no stock then
    empty = await stub.GetStock(as_of_request("grpc-sku", before))
    assert (list(empty.warehouses), empty.available, empty.total) == ([], 0, 0)
    then = await stub.GetStock(as_of_request("grpc-sku", between))
    assert [(w.warehouse_id, w.available, w.reserved, w.total) for w in then.warehouses] == [
        ("default", 5, 0, 5)
    ]
    assert (then.available, then.sellable, then.backordered) == (5, 5, 0)
    # the wh-2 row exists now, not then
    later_row = await stub.GetStock(as_of_request("grpc-sku", between, warehouse_id="wh-2"))
    assert list(later_row.warehouses) == []
    now = await stub.GetStock(as_of_request("grpc-sku", await db_clock(container.db)))
    current = await stub.GetStock(pb.GetStockRequest(product_id="grpc-sku"))
    assert [(w.stock_id, w.available, w.reserved, w.total) for w in now.warehouses] == [
        (w.stock_id, w.available, w.reserved, w.total) for w in current.warehouses
    ]
    assert (now.available, now.reserved, now.total) == (10, 2, 12)

    # the future, beyond the allowance: INVALID_ARGUMENT naming as_of
    future = datetime.now().astimezone() + AS_OF_CLOCK_SKEW + timedelta(seconds=30)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetStock(as_of_request("grpc-sku", future))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("as_of: ")

    bad = pb.GetStockRequest(product_id="grpc-sku")
    bad.as_of.nanos = -1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetStock(bad)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("as_of: ")

    # a SKU with no stock row at all is unknown, at any instant, as for GetStock
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetStock(as_of_request("no-such-sku", between))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_as_of_within_the_clock_skew_allowance_is_now(container: Container) -> None:
    await stock(container, "skew", "SET", 4)
    soon = await db_clock(container.db) + AS_OF_CLOCK_SKEW / 2
    view = await container.queries.get_stock_as_of(Sku("skew"), None, soon)
    assert view.total == 4
    with pytest.raises(InvalidArgument) as caught:
        await container.queries.get_stock_as_of(Sku("skew"), None, soon + AS_OF_CLOCK_SKEW * 2)
    assert caught.value.field == "as_of"
