"""Fuzzing the gRPC API below and around the fields: wire bytes and metadata.

``tests/integration/test_api_properties.py`` sends well-formed messages with any field
values; this module sends what a well-formed client never would: bytes that are not a valid
message (random, or a valid message cut or corrupted), unknown fields, and any
``authorization`` metadata. Every RPC answers a specific client status, never INTERNAL or
UNKNOWN, and the admin RPC opens only to the configured token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.seed import seed_demo
from service.api import server as grpc_api
from service.api.auth import token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.invariants import check

pytestmark = pytest.mark.stack

TOKEN = "fuzz-admin-token"
SERVICE = "/inventory.v1.InventoryService/"
CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
VALID: dict[str, Any] = {
    "CheckStock": pb.CheckStockRequest(product_id="prod-123", variant_id="var-456", quantity=2),
    "BulkCheckStock": pb.BulkCheckStockRequest(
        items=[pb.StockItem(product_id="prod-456", quantity=1)]
    ),
    "GetStock": pb.GetStockRequest(product_id="prod-123", variant_id="var-456"),
    "ReserveStock": pb.ReserveStockRequest(
        order_id="fuzz-order",
        items=[pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=1)],
    ),
    "ReleaseReservation": pb.ReleaseReservationRequest(order_id="fuzz-order", reason="fuzz"),
    "CommitReservation": pb.CommitReservationRequest(order_id="fuzz-order"),
    "UpdateStock": pb.UpdateStockRequest(product_id="prod-456", quantity=1, operation=pb.ADD),
}


@pytest.fixture
async def channel(container: Container) -> AsyncIterator[grpc.aio.Channel]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    settings_ = container.settings.model_copy(
        update={
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "admin_token_sha256": [token_digest(TOKEN)],
        }
    )
    server = await grpc_api.start(settings_, container)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


async def raw_call(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: Any = ()
) -> grpc.StatusCode:
    call = channel.unary_unary(SERVICE + method)  # no serializers: the bytes go as they are
    try:
        await call(body, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as error:
        assert error.code() in CLIENT_ERRORS, (method, body[:80], error.code(), error.details())
        assert "Traceback" not in (error.details() or "") and "<class" not in (
            error.details() or ""
        )
        return error.code()
    return grpc.StatusCode.OK


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A method and bytes: random, or a valid request cut short, corrupted or extended."""
    method = draw(st.sampled_from(sorted(VALID)))
    valid = VALID[method].SerializeToString()
    how = draw(st.sampled_from(["random", "cut", "flip", "junk", "unknown-field"]))
    if how == "random":
        return method, draw(st.binary(max_size=200))
    if how == "cut":
        return method, valid[: draw(st.integers(0, max(len(valid) - 1, 0)))]
    if how == "flip":
        at = draw(st.integers(0, len(valid) - 1))
        return method, valid[:at] + bytes([valid[at] ^ draw(st.integers(1, 255))]) + valid[at + 1 :]
    if how == "junk":
        return method, valid + draw(st.binary(min_size=1, max_size=50))
    # a field number the message does not have (proto3 keeps it as an unknown field)
    return method, valid + b"\xf8\x07" + draw(st.binary(min_size=1, max_size=1))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=bodies())
async def test_bytes_that_are_no_valid_message_get_a_client_error(
    channel: grpc.aio.Channel, container: Container, call: tuple[str, bytes]
) -> None:
    method, body = call
    admin = (("authorization", f"Bearer {TOKEN}"),)
    await raw_call(channel, method, body, admin if method == "UpdateStock" else ())


async def test_undecodable_bytes_are_invalid_argument_for_every_rpc(
    channel: grpc.aio.Channel, container: Container
) -> None:
    admin = (("authorization", f"Bearer {TOKEN}"),)
    for method in VALID:
        code = await raw_call(channel, method, b"\xff\xff\xff\xff", admin)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, method
    assert await check(container.db) == []


header_values = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=5_000),
    st.sampled_from(
        [
            "",
            "Bearer",
            "Bearer ",
            f"bearer {TOKEN}",
            f"Bearer  {TOKEN} ",
            f"Bearer {TOKEN}x",
            f"Bearer {TOKEN[:-1]}",
            f"Basic {TOKEN}",
            token_digest(TOKEN),
            f"Bearer {token_digest(TOKEN)}",
        ]
    ),
)


def valid_header(value: str) -> bool:
    """Only printable ASCII may be sent in a text header; grpc refuses the rest client-side."""
    return all(32 <= ord(c) < 127 for c in value)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(header_values.filter(valid_header), max_size=3))
async def test_update_stock_opens_only_to_the_token(
    channel: grpc.aio.Channel, container: Container, values: list[str]
) -> None:
    metadata = tuple(("authorization", v) for v in values)
    code = await raw_call(
        channel, "UpdateStock", VALID["UpdateStock"].SerializeToString(), metadata
    )
    first = values[0] if values else ""
    opens = first[:7].lower() == "bearer " and first[7:].strip() == TOKEN
    assert (code is grpc.StatusCode.OK) == opens, (values, code)
    if not opens:
        assert code is grpc.StatusCode.UNAUTHENTICATED
