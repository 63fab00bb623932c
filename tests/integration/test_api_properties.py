"""Property: whatever field values a client sends, the API answers OK or a specific client
error (never INTERNAL, UNKNOWN or UNAVAILABLE), and the stock invariants hold afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from db import invariant_sql
from db.seed import seed_demo
from service.api import server as grpc_api
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container

TOKEN = "property-admin-token"
CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


def mostly(valid: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``valid`` about nine times in ten (one_of alone would pick ``rarely`` half the time)."""
    return st.integers(0, 9).flatmap(lambda n: rarely if n == 9 else valid)


# Mostly values that exist, so that requests get past validation and reach the engine;
# sometimes anything at all.
anything = st.one_of(st.sampled_from(["", " ", "x" * 129, "\x00"]), st.text(max_size=140))
products = mostly(st.sampled_from(["prod-123", "prod-456", "prod-789", "new-product"]), anything)
variants = mostly(st.sampled_from(["", "", "var-456", "var-789"]), anything)
warehouses = mostly(st.sampled_from(["", "", "", "default", "wh-east", "nowhere"]), anything)
orders = mostly(st.sampled_from([f"order-{n}" for n in range(6)]), anything)
quantities = mostly(st.integers(1, 40), st.one_of(st.integers(-2, 0), INT64))
reasons = mostly(st.text(max_size=20), st.text(min_size=500, max_size=600))
known_skus = st.sampled_from(
    [("prod-123", "var-456"), ("prod-456", ""), ("prod-789", ""), ("prod-123", "var-789")]
)
skus = mostly(known_skus, st.tuples(products, variants))


@st.composite
def items(draw: st.DrawFn) -> pb.StockItem:
    product_id, variant_id = draw(skus)
    return pb.StockItem(
        product_id=product_id,
        variant_id=variant_id,
        quantity=draw(quantities),
        warehouse_id=draw(warehouses),
    )


ADMIN = (("authorization", f"Bearer {TOKEN}"),)
metadata = mostly(st.just(ADMIN), st.sampled_from([(), (("authorization", "Bearer wrong"),)]))


@st.composite
def update_stock(draw: st.DrawFn) -> pb.UpdateStockRequest:
    request = pb.UpdateStockRequest(
        product_id=draw(products),
        variant_id=draw(variants),
        operation=draw(mostly(st.sampled_from([1, 1, 2, 3]), INT32)),
        reason=draw(reasons),
        warehouse_id=draw(warehouses),
    )
    if draw(mostly(st.just(True), st.just(False))):
        request.quantity = draw(quantities)
    if draw(st.booleans()):
        request.expected_version = draw(mostly(st.integers(1, 5), st.one_of(st.just(-1), INT64)))
    if draw(st.booleans()):
        request.idempotency_key = draw(st.one_of(st.sampled_from(["k-1", "k-2"]), anything))
    return request


calls = st.one_of(
    st.tuples(
        st.just("CheckStock"),
        st.builds(
            pb.CheckStockRequest,
            product_id=products,
            variant_id=variants,
            quantity=quantities,
            warehouse_id=warehouses,
        ),
    ),
    st.tuples(
        st.just("BulkCheckStock"),
        st.builds(
            pb.BulkCheckStockRequest,
            items=mostly(st.lists(items(), min_size=1, max_size=3), st.just([])),
        ),
    ),
    st.tuples(
        st.just("GetStock"),
        st.builds(
            pb.GetStockRequest, product_id=products, variant_id=variants, warehouse_id=warehouses
        ),
    ),
    st.tuples(
        st.just("ReserveStock"),
        st.builds(
            pb.ReserveStockRequest,
            order_id=orders,
            items=mostly(st.lists(items(), min_size=1, max_size=3), st.just([])),
            ttl_seconds=mostly(st.sampled_from([0, 60, 900]), st.one_of(st.integers(-1, 1), INT64)),
        ),
    ),
    st.tuples(
        st.just("ReleaseReservation"),
        st.builds(pb.ReleaseReservationRequest, order_id=orders, reason=reasons),
    ),
    st.tuples(
        st.just("CommitReservation"), st.builds(pb.CommitReservationRequest, order_id=orders)
    ),
    st.tuples(st.just("UpdateStock"), update_stock()),
)


@pytest.fixture
async def stub(container: Container) -> AsyncIterator[pb_grpc.InventoryServiceStub]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    settings_ = container.settings.model_copy(update={"grpc_host": "127.0.0.1", "grpc_port": 0})
    server = await grpc_api.start(settings_, container, auth=AdminAuth([token_digest(TOKEN)]))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.InventoryServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


async def broken_invariants(container: Container) -> list[Any]:
    async with container.db.connect() as conn:
        broken: list[Any] = []
        for query in (
            invariant_sql.BROKEN_LEVELS,
            invariant_sql.RESERVED_MISMATCH,
            invariant_sql.LEDGER_MISMATCH,
            invariant_sql.ORPHAN_RESERVATIONS,
        ):
            broken.extend((await conn.execute(query)).all())
        return broken


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=calls, meta=metadata)
async def test_any_input_gets_ok_or_a_client_error(
    stub: pb_grpc.InventoryServiceStub,
    container: Container,
    call: tuple[str, Any],
    meta: tuple[tuple[str, str], ...],
) -> None:
    method, request = call
    try:
        await getattr(stub, method)(request, metadata=meta, timeout=10)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()
        assert code in CLIENT_ERRORS, (method, request, code, error.details())
        assert error.details(), "a refusal says why"
    assert code in CLIENT_ERRORS
    event(f"{method} {code.name}")  # pytest --hypothesis-show-statistics shows the spread
    assert await broken_invariants(container) == []
