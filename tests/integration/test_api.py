"""The gRPC API against a real server on a free port, the real engine and PostgreSQL.

Every RPC's happy path, the status codes of docs/architecture.md ("gRPC status codes")
reached by a real request (INTERNAL cannot be reached by design; RESOURCE_EXHAUSTED is in
test_security.py), the admin credential, deadlines, health and reflection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy import text

from db import invariant_sql
from db.seed import seed_demo
from service.api import server as grpc_api
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container, build
from service.config import Settings
from service.devtools.ports import free_port

TOKEN = "integration-admin-token"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)
SERVICE = "inventory.v1.InventoryService"
DEMO = {"product_id": "prod-123", "variant_id": "var-456"}


@dataclass
class Api:
    stub: pb_grpc.InventoryServiceStub
    channel: grpc.aio.Channel
    server: grpc_api.GrpcServer
    container: Container


@asynccontextmanager
async def serving(container: Container, auth: AdminAuth) -> AsyncIterator[Api]:
    settings = container.settings.model_copy(update={"grpc_host": "127.0.0.1", "grpc_port": 0})
    server = await grpc_api.start(settings, container, auth=auth)
    await server.set_serving(True)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Api(pb_grpc.InventoryServiceStub(channel), channel, server, container)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


async def rpc_error(awaitable: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value


def reserve_request(
    order_id: str, *items: tuple[str, str, int], ttl: int = 0
) -> pb.ReserveStockRequest:
    return pb.ReserveStockRequest(
        order_id=order_id,
        items=[pb.StockItem(product_id=p, variant_id=v, quantity=q) for p, v, q in items],
        ttl_seconds=ttl,
    )


async def totals(api: Api, product_id: str, variant_id: str = "") -> tuple[int, int, int]:
    stock = await api.stub.GetStock(
        pb.GetStockRequest(product_id=product_id, variant_id=variant_id)
    )
    return stock.available, stock.reserved, stock.total


# -- happy paths --


async def test_get_stock_per_warehouse_and_in_total(api: Api) -> None:
    stock = await api.stub.GetStock(pb.GetStockRequest(**DEMO))
    by_warehouse = {w.warehouse_id: w.available for w in stock.warehouses}
    default = api.container.settings.default_warehouse_id
    assert by_warehouse == {default: 100, "wh-east": 50, "wh-west": 25}
    assert (stock.available, stock.reserved, stock.total) == (175, 0, 175)
    assert all(w.version >= 1 and w.stock_id for w in stock.warehouses)

    east = await api.stub.GetStock(pb.GetStockRequest(**DEMO, warehouse_id="wh-east"))
    assert [w.warehouse_id for w in east.warehouses] == ["wh-east"]
    assert east.total == 50


async def test_check_stock_the_seed_example(api: Api) -> None:
    answer = await api.stub.CheckStock(pb.CheckStockRequest(**DEMO, quantity=5))
    assert answer.available and answer.available_quantity == 175
    assert answer.item.known and answer.item.available_by_warehouse["wh-west"] == 25

    west = await api.stub.CheckStock(
        pb.CheckStockRequest(**DEMO, quantity=30, warehouse_id="wh-west")
    )
    assert not west.available and west.available_quantity == 25


async def test_bulk_check_stock_answers_each_item(api: Api) -> None:
    request = pb.BulkCheckStockRequest(
        items=[
            pb.StockItem(**DEMO, quantity=5),
            pb.StockItem(product_id="prod-999", quantity=1),
            pb.StockItem(product_id="no-such-product", quantity=1),
        ]
    )
    answer = await api.stub.BulkCheckStock(request)
    assert not answer.all_available
    assert [(i.available, i.known) for i in answer.items] == [
        (True, True),
        (False, True),
        (False, False),
    ]


async def test_reserve_commit_and_release(api: Api) -> None:
    seed_example = reserve_request(
        "order-789", ("prod-123", "var-456", 2), ("prod-456", "", 1), ttl=900
    )
    before = datetime.now(UTC)
    reserved = await api.stub.ReserveStock(seed_example)
    assert reserved.state == pb.ORDER_STATE_RESERVED and not reserved.duplicate
    assert sorted((r.product_id, r.quantity) for r in reserved.reservations) == [
        ("prod-123", 2),
        ("prod-456", 1),
    ]
    assert all(
        r.reservation_id and r.status == pb.RESERVATION_STATUS_PENDING
        for r in reserved.reservations
    )
    expires = reserved.expires_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(seconds=890) < expires < before + timedelta(seconds=960)
    assert await totals(api, "prod-123", "var-456") == (173, 2, 175)

    again = await api.stub.ReserveStock(seed_example)
    assert again.duplicate and again.state == pb.ORDER_STATE_RESERVED
    assert {r.reservation_id for r in again.reservations} == {
        r.reservation_id for r in reserved.reservations
    }
    assert await totals(api, "prod-123", "var-456") == (173, 2, 175)

    committed = await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="order-789"))
    assert committed.state == pb.ORDER_STATE_COMMITTED
    assert all(r.status == pb.RESERVATION_STATUS_COMMITTED for r in committed.reservations)
    assert await totals(api, "prod-123", "var-456") == (173, 0, 173)
    repeat = await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="order-789"))
    assert repeat.duplicate and repeat.state == pb.ORDER_STATE_COMMITTED

    await api.stub.ReserveStock(reserve_request("order-790", ("prod-123", "var-456", 3)))
    released = await api.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(order_id="order-790", reason="customer cancelled")
    )
    assert released.state == pb.ORDER_STATE_RELEASED
    assert all(r.status == pb.RESERVATION_STATUS_RELEASED for r in released.reservations)
    assert await totals(api, "prod-123", "var-456") == (173, 0, 173)


async def test_update_stock_add_subtract_set_and_compare_and_set(api: Api) -> None:
    def update(op: int, quantity: int, **extra: object) -> object:
        request = pb.UpdateStockRequest(
            **DEMO, quantity=quantity, operation=op, reason="Restocking from supplier", **extra
        )
        return api.stub.UpdateStock(request, metadata=ADMIN)

    added = (await update(pb.ADD, 100)).stock  # type: ignore[attr-defined]
    assert added.warehouse_id == api.container.settings.default_warehouse_id
    assert (added.available, added.reserved, added.total) == (200, 0, 200)
    subtracted = (await update(pb.SUBTRACT, 50, expected_version=added.version)).stock  # type: ignore[attr-defined]
    assert subtracted.total == 150 and subtracted.version > added.version
    counted = (await update(pb.SET, 10, warehouse_id="wh-west")).stock  # type: ignore[attr-defined]
    assert (counted.warehouse_id, counted.total, counted.available) == ("wh-west", 10, 10)

    stale = await rpc_error(update(pb.ADD, 1, expected_version=added.version))
    assert stale.code() is grpc.StatusCode.FAILED_PRECONDITION

    first = (await update(pb.ADD, 5, idempotency_key="restock-42")).stock  # type: ignore[attr-defined]
    retried = (await update(pb.ADD, 5, idempotency_key="restock-42")).stock  # type: ignore[attr-defined]
    assert first.total == retried.total == 155


async def test_update_stock_creates_a_new_sku(api: Api) -> None:
    request = pb.UpdateStockRequest(product_id="brand-new", quantity=7, operation=pb.ADD)
    created = await api.stub.UpdateStock(request, metadata=ADMIN)
    assert created.stock.total == 7
    assert await totals(api, "brand-new") == (7, 0, 7)


# -- every status code --


async def test_invalid_argument(api: Api) -> None:
    error = await rpc_error(api.stub.ReserveStock(reserve_request("", ("prod-123", "var-456", 1))))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "order_id" in error.details()


async def test_not_found(api: Api) -> None:
    error = await rpc_error(api.stub.GetStock(pb.GetStockRequest(product_id="no-such-product")))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        api.stub.CheckStock(pb.CheckStockRequest(product_id="nope", quantity=1))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_a_sku_beside_its_variant_in_one_order_is_not_an_internal_error(api: Api) -> None:
    """prod-123 (no variant) is unknown while prod-123:var-456 exists; found by the property
    test: sorting Sku(prod-123, None) against Sku(prod-123, 'var-456') raised TypeError."""
    request = reserve_request("order-mixed", ("prod-123", "var-456", 1), ("prod-123", "", 1))
    error = await rpc_error(api.stub.ReserveStock(request))
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_failed_precondition_names_what_is_short(api: Api) -> None:
    request = reserve_request("order-short", ("prod-789", "", 6), ("prod-123", "var-456", 1))
    error = await rpc_error(api.stub.ReserveStock(request))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "prod-789" in error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    detail = pb.InsufficientStockDetail()
    assert status.details[0].Unpack(detail)
    assert [
        (s.product_id, s.requested_quantity, s.available_quantity) for s in detail.shortages
    ] == [("prod-789", 6, 5)]
    # all or nothing: the item that was available was not reserved either
    assert await totals(api, "prod-123", "var-456") == (175, 0, 175)

    subtract = pb.UpdateStockRequest(
        product_id="prod-789", quantity=6, operation=pb.SUBTRACT, warehouse_id="wh-east"
    )
    error = await rpc_error(api.stub.UpdateStock(subtract, metadata=ADMIN))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_already_exists_for_the_same_order_with_other_items(api: Api) -> None:
    await api.stub.ReserveStock(reserve_request("order-1", ("prod-123", "var-456", 1)))
    error = await rpc_error(
        api.stub.ReserveStock(reserve_request("order-1", ("prod-123", "var-456", 2)))
    )
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_unavailable_when_the_database_is_unreachable(settings: Settings) -> None:
    closed = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://inventory@127.0.0.1:{free_port()}/inventory",
            "db_connect_timeout_s": 1.0,
        }
    )
    async with (
        build(closed) as container,
        serving(container, AdminAuth([token_digest(TOKEN)])) as api,
    ):
        error = await rpc_error(api.stub.GetStock(pb.GetStockRequest(**DEMO)))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        error = await rpc_error(
            api.stub.ReserveStock(reserve_request("o-1", ("prod-123", "var-456", 1)))
        )
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "127.0.0.1" not in error.details()


async def test_update_stock_credentials(api: Api, container: Container) -> None:
    request = pb.UpdateStockRequest(**DEMO, quantity=1, operation=pb.ADD, reason="count")
    missing = await rpc_error(api.stub.UpdateStock(request))
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED
    wrong = await rpc_error(
        api.stub.UpdateStock(request, metadata=(("authorization", "Bearer nope"),))
    )
    assert wrong.code() is grpc.StatusCode.UNAUTHENTICATED
    assert (await api.stub.UpdateStock(request, metadata=ADMIN)).stock.total == 101

    async with serving(container, AdminAuth([])) as unconfigured:
        denied = await rpc_error(unconfigured.stub.UpdateStock(request, metadata=ADMIN))
        assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "not configured" in denied.details()
    assert await totals(api, "prod-123", "var-456") == (176, 0, 176)

    async with api.container.db.connect() as conn:
        actors = (
            (
                await conn.execute(
                    text("SELECT DISTINCT actor FROM stock_movements WHERE reason = 'count'")
                )
            )
            .scalars()
            .all()
        )
    assert actors == ["token:" + token_digest(TOKEN)[:8]]


# -- deadlines: an order is never half committed --


async def test_expired_deadlines_never_leave_half_an_order(api: Api) -> None:
    items = (("prod-123", "var-456", 1), ("prod-456", "", 1), ("prod-123", "var-789", 1))
    for n in range(10):  # deadlines from 1 ms to 0.5 s: some expire mid-way
        request = reserve_request(f"deadline-{n}", *items)
        try:
            await api.stub.ReserveStock(request, timeout=0.001 * 2**n)
        except grpc.aio.AioRpcError as error:
            assert error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
    await asyncio.sleep(0.2)  # let any batch that was already running commit
    async with api.container.db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT order_id, count(*) FROM reservations WHERE order_id LIKE 'deadline-%' "
                "GROUP BY order_id"
            )
        )
        counts = {order_id: count for order_id, count in rows}
        broken = (await conn.execute(invariant_sql.BROKEN_LEVELS)).all()
    assert all(count == len(items) for count in counts.values()), counts
    assert broken == []


# -- health and reflection --


async def test_health_says_serving(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for name in ("", SERVICE):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    await api.server.set_serving(False)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_service(api: Api) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names

    await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE))
    described = await call.read()
    assert described.file_descriptor_response.file_descriptor_proto
    await call.done_writing()
