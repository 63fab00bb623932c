"""ListWarehouses and UpsertWarehouse over gRPC, and what deactivating a warehouse does.

A real server on a free port, the real engine, PostgreSQL and Redis (the helpers of
tests/integration/test_api.py). A deactivated warehouse takes no new reservation from the next
engine batch on, in every process (every batch loads the warehouses and locks its stock rows
joined with theirs); the reservations it holds stay valid: they commit, release and expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import grpc
import pytest
from sqlalchemy import text

from db.seed import seed_demo
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container, build
from service.domain import validation
from tests.integration.test_api import ADMIN, TOKEN, Api, rpc_error, serving
from tests.waiting import wait_for

SKU = {"product_id": "wh-load", "variant_id": "v1"}
STOCKED = ("wh-east", "wh-west")  # priorities 10 and 20 (db/seed.py): wh-east is taken first


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


def upsert(
    warehouse_id: str, name: str, priority: int, active: bool = True
) -> pb.UpsertWarehouseRequest:
    return pb.UpsertWarehouseRequest(
        warehouse_id=warehouse_id, name=name, priority=priority, active=active
    )


async def listed(api: Api) -> list[tuple[str, str, int, bool]]:
    answer = await api.stub.ListWarehouses(pb.ListWarehousesRequest())
    return [(w.warehouse_id, w.name, w.priority, w.active) for w in answer.warehouses]


async def stock_up(api: Api, quantity: int, warehouses: tuple[str, ...] = STOCKED) -> None:
    for warehouse_id in warehouses:
        await api.stub.UpdateStock(
            pb.UpdateStockRequest(
                **SKU, warehouse_id=warehouse_id, operation=pb.ADD, quantity=quantity
            ),
            metadata=ADMIN,
        )


async def reserve_one(api: Api, order_id: str, warehouse_id: str = "") -> pb.ReserveStockResponse:
    item = pb.StockItem(**SKU, quantity=1, warehouse_id=warehouse_id)
    return await api.stub.ReserveStock(pb.ReserveStockRequest(order_id=order_id, items=[item]))


async def levels(api: Api) -> dict[str, tuple[int, int, int]]:
    stock = await api.stub.GetStock(pb.GetStockRequest(**SKU))
    return {w.warehouse_id: (w.available, w.reserved, w.total) for w in stock.warehouses}


# -- ListWarehouses, UpsertWarehouse --


async def test_list_warehouses_by_priority_then_id_without_credentials(api: Api) -> None:
    default = api.container.settings.default_warehouse_id
    assert [w[0] for w in await listed(api)] == ["wh-east", "wh-west", default]

    await api.stub.UpsertWarehouse(upsert("wh-a", "A", 10), metadata=ADMIN)  # ties wh-east

    assert [(w[0], w[2]) for w in await listed(api)] == [
        ("wh-a", 10),
        ("wh-east", 10),
        ("wh-west", 20),
        (default, 100),
    ]


async def test_upsert_creates_then_updates_every_field(api: Api) -> None:
    created = await api.stub.UpsertWarehouse(upsert("wh-north", "North", 5), metadata=ADMIN)
    assert created.warehouse == pb.Warehouse(
        warehouse_id="wh-north", name="North", priority=5, active=True
    )
    assert ("wh-north", "North", 5, True) in await listed(api)

    changed = await api.stub.UpsertWarehouse(
        upsert("wh-north", "North (closed)", 50, active=False), metadata=ADMIN
    )
    assert changed.warehouse == pb.Warehouse(
        warehouse_id="wh-north", name="North (closed)", priority=50, active=False
    )
    assert ("wh-north", "North (closed)", 50, False) in await listed(api)
    assert sum(w[0] == "wh-north" for w in await listed(api)) == 1


async def test_a_new_warehouse_is_used_by_the_next_batch(api: Api) -> None:
    await api.stub.UpsertWarehouse(upsert("wh-first", "First", 1), metadata=ADMIN)
    await stock_up(api, 5, ("wh-first", *STOCKED))

    answer = await reserve_one(api, "order-new-warehouse")

    assert [r.warehouse_id for r in answer.reservations] == ["wh-first"]


async def test_upsert_needs_the_admin_credential(api: Api) -> None:
    before = await listed(api)
    missing = await rpc_error(api.stub.UpsertWarehouse(upsert("wh-x", "X", 1)))
    wrong = await rpc_error(
        api.stub.UpsertWarehouse(
            upsert("wh-x", "X", 1), metadata=(("authorization", "Bearer not-the-token"),)
        )
    )
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await listed(api) == before


async def test_upsert_without_any_admin_configured_is_permission_denied(
    container: Container,
) -> None:
    async with serving(container, AdminAuth([])) as api:
        error = await rpc_error(api.stub.UpsertWarehouse(upsert("wh-x", "X", 1), metadata=ADMIN))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "wh-x" not in [w[0] for w in await listed(api)]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"warehouse_id": "", "name": "X", "priority": 1}, "warehouse_id"),
        ({"warehouse_id": "   ", "name": "X", "priority": 1}, "warehouse_id"),
        ({"warehouse_id": "w" * 129, "name": "X", "priority": 1}, "warehouse_id"),
        ({"warehouse_id": "wh\x07", "name": "X", "priority": 1}, "warehouse_id"),
        ({"warehouse_id": "wh-x", "name": "", "priority": 1}, "name"),
        ({"warehouse_id": "wh-x", "name": "  ", "priority": 1}, "name"),
        ({"warehouse_id": "wh-x", "name": "n" * 257, "priority": 1}, "name"),
        ({"warehouse_id": "wh-x", "name": "two\nlines", "priority": 1}, "name"),
        ({"warehouse_id": "wh-x", "name": "X", "priority": -1}, "priority"),
    ],
)
async def test_upsert_refuses_bad_input_naming_the_field(
    api: Api, request_fields: dict[str, object], field: str
) -> None:
    request = pb.UpsertWarehouseRequest(**request_fields)  # type: ignore[arg-type]
    error = await rpc_error(api.stub.UpsertWarehouse(request, metadata=ADMIN))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}:")
    assert "wh-x" not in [w[0] for w in await listed(api)]


async def test_upsert_accepts_the_bounds(api: Api) -> None:
    top = 2**31 - 1
    answer = await api.stub.UpsertWarehouse(upsert("w" * 128, "n" * 256, top), metadata=ADMIN)
    assert (answer.warehouse.priority, len(answer.warehouse.name)) == (top, 256)
    zero = await api.stub.UpsertWarehouse(upsert("wh-zero", "Zero", 0), metadata=ADMIN)
    assert zero.warehouse.priority == 0


# -- deactivation --


@dataclass
class Sent:
    order_id: str
    after_change: bool  # sent once the deactivation had been answered
    warehouses: tuple[str, ...]


async def db_now(api: Api) -> datetime:
    async with api.container.db.connect() as conn:
        moment: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    return moment


async def load_reaches(
    count: int, workers: list[asyncio.Task[None]], sent: list[Sent], when: str
) -> None:
    def alive() -> None:
        for worker in workers:
            if worker.done():
                worker.result()  # raises what stopped it
                raise AssertionError("a reserver stopped early")

    await wait_for(
        lambda: len(sent) >= count, within_s=120, what=f"{count} reservations {when}", alive=[alive]
    )


async def test_deactivating_a_warehouse_mid_load(api: Api) -> None:
    """Concurrent reservers on a SKU in wh-east (taken first) and wh-west; wh-east is
    deactivated part-way. No reservation made after the change committed lands in wh-east;
    the ones it held still commit and release; reactivating it makes it first again."""
    await stock_up(api, 100_000)
    sent: list[Sent] = []
    changed = asyncio.Event()
    stop = asyncio.Event()

    async def reserver(worker: int) -> None:
        n = 0
        while not stop.is_set():
            after_change = changed.is_set()
            order_id = f"load-{worker}-{n}"
            answer = await reserve_one(api, order_id)
            assert answer.state == pb.ORDER_STATE_RESERVED
            sent.append(
                Sent(order_id, after_change, tuple(r.warehouse_id for r in answer.reservations))
            )
            n += 1

    workers = [asyncio.create_task(reserver(w)) for w in range(8)]
    try:
        await load_reaches(80, workers, sent, "before the change")
        before_change = await db_now(api)
        await api.stub.UpsertWarehouse(upsert("wh-east", "East", 10, active=False), metadata=ADMIN)
        committed_by = await db_now(api)  # the change committed before this instant
        changed.set()
        mark = len(sent)
        await load_reaches(mark + 80, workers, sent, "after the change")
    finally:
        stop.set()
        await asyncio.gather(*workers)

    async with api.container.db.connect() as conn:
        rows = (
            await conn.execute(text("SELECT order_id, warehouse_id, created_at FROM reservations"))
        ).all()
    assert len(rows) == len(sent)
    # the load did straddle the change: wh-east took the early ones, wh-west the late ones
    assert any(r.warehouse_id == "wh-east" and r.created_at < before_change for r in rows)
    late = [r for r in rows if r.created_at > committed_by]
    assert late, "no reservation was made after the change"
    assert {r.warehouse_id for r in late} == {"wh-west"}, "a reservation landed in wh-east"
    # from the callers' side: a request sent once the change was answered never got wh-east
    after = [s for s in sent if s.after_change]
    assert after and all(s.warehouses == ("wh-west",) for s in after)

    # wh-east's reservations are still valid: commit half, release the rest
    east_orders = sorted({r.order_id for r in rows if r.warehouse_id == "wh-east"})
    commit, release = east_orders[::2], east_orders[1::2]
    east_before = (await levels(api))["wh-east"]
    for order_id in commit:
        done = await api.stub.CommitReservation(pb.CommitReservationRequest(order_id=order_id))
        assert done.state == pb.ORDER_STATE_COMMITTED, order_id
    for order_id in release:
        done = await api.stub.ReleaseReservation(pb.ReleaseReservationRequest(order_id=order_id))
        assert done.state == pb.ORDER_STATE_RELEASED, order_id
    available, reserved, total = east_before
    assert reserved == len(east_orders)
    assert (await levels(api))["wh-east"] == (
        available + len(release),
        0,
        total - len(commit),
    )

    # asking for the deactivated warehouse by name: short, as if it held nothing
    named = await rpc_error(reserve_one(api, "order-named-east", warehouse_id="wh-east"))
    assert named.code() == grpc.StatusCode.FAILED_PRECONDITION

    # reactivated: first by priority again, from the next batch on
    await api.stub.UpsertWarehouse(upsert("wh-east", "East", 10, active=True), metadata=ADMIN)
    again = await reserve_one(api, "order-after-reactivation")
    assert [r.warehouse_id for r in again.reservations] == ["wh-east"]


async def test_a_deactivation_holds_in_another_process_and_leaves_expiry_alone(
    api: Api,
) -> None:
    """Another engine (another process: its own pool and batches) sees the change in its next
    batch; a reservation held in the deactivated warehouse still expires."""
    await stock_up(api, 10)
    held = await reserve_one(api, "order-held-east")
    assert [r.warehouse_id for r in held.reservations] == ["wh-east"]

    await api.stub.UpsertWarehouse(upsert("wh-east", "East", 10, active=False), metadata=ADMIN)

    async with build(api.container.settings) as other:
        command = validation.reserve(
            "order-other-process",
            [{**SKU, "quantity": 2}],
            0,
            other.limits,
        )
        result = await other.engine.reserve(command)
        assert [line.warehouse_id for line in result.reservations] == ["wh-west"]

        async with other.db.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE reservations SET expires_at = now() - interval '1 second' "
                    "WHERE order_id = 'order-held-east'"
                )
            )
            await conn.execute(
                text(
                    "UPDATE orders SET expires_at = now() - interval '1 second' "
                    "WHERE order_id = 'order-held-east'"
                )
            )
        [expired] = await other.engine.expire(["order-held-east"])
    assert expired.state.value == "EXPIRED"
    assert (await levels(api))["wh-east"] == (10, 0, 10)


async def test_a_split_reservation_skips_the_deactivated_warehouse(api: Api) -> None:
    await stock_up(api, 3)
    await api.stub.UpsertWarehouse(upsert("wh-east", "East", 10, active=False), metadata=ADMIN)

    item = pb.StockItem(**SKU, quantity=3)
    answer = await api.stub.ReserveStock(pb.ReserveStockRequest(order_id="o-split", items=[item]))
    assert [(r.warehouse_id, r.quantity) for r in answer.reservations] == [("wh-west", 3)]

    item = pb.StockItem(**SKU, quantity=1)
    short = await rpc_error(
        api.stub.ReserveStock(pb.ReserveStockRequest(order_id="o-short", items=[item]))
    )
    assert short.code() == grpc.StatusCode.FAILED_PRECONDITION  # wh-east's 3 are not offered
