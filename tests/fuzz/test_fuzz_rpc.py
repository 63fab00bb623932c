"""Fuzzing the gRPC API below and around the fields: wire bytes and metadata.

``tests/integration/test_api_properties.py`` sends well-formed messages with any field
values; this module sends what a well-formed client never would: bytes that are not a valid
message (random, or a valid message cut or corrupted), unknown fields, and any
``authorization`` metadata. Every RPC answers a specific client status, never INTERNAL or
UNKNOWN, and the admin RPCs open only to the configured token. SetStockPolicy, ExtendReservation,
GetOrder, GetStock ``as_of``, ListStock, ListMovements (page sizes, page tokens and filters) and
UpsertWarehouse, the newest RPCs, also get any values in their fields here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, event, given, settings
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
    "GetStock": pb.GetStockRequest(
        product_id="prod-123", variant_id="var-456", as_of=Timestamp(seconds=1_767_225_600)
    ),
    "ReserveStock": pb.ReserveStockRequest(
        order_id="fuzz-order",
        items=[pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=1)],
    ),
    "ReleaseReservation": pb.ReleaseReservationRequest(order_id="fuzz-order", reason="fuzz"),
    "CommitReservation": pb.CommitReservationRequest(order_id="fuzz-order"),
    "UpdateStock": pb.UpdateStockRequest(product_id="prod-456", quantity=1, operation=pb.ADD),
    "SetStockPolicy": pb.SetStockPolicyRequest(
        product_id="prod-456", safety_stock=2, reorder_point=5, backorder_limit=3
    ),
    "ExtendReservation": pb.ExtendReservationRequest(order_id="fuzz-order", ttl_seconds=600),
    "GetOrder": pb.GetOrderRequest(order_id="fuzz-order"),
    "ListStock": pb.ListStockRequest(
        page_size=3, warehouse_id="wh-east", product_id_prefix="prod-", out_of_stock=False
    ),
    "ListMovements": pb.ListMovementsRequest(
        page_size=3,
        product_id="prod-123",
        operation="SET",
        since=Timestamp(seconds=1_767_225_600),
        newest_first=True,
    ),
    "ListWarehouses": pb.ListWarehousesRequest(),
    "UpsertWarehouse": pb.UpsertWarehouseRequest(
        warehouse_id="wh-fuzz", name="Fuzz", priority=30, active=True
    ),
    "TransferStock": pb.TransferStockRequest(
        product_id="prod-123",
        variant_id="var-456",
        from_warehouse="wh-east",
        to_warehouse="wh-west",
        quantity=1,
        idempotency_key="fuzz-move",
    ),
    "ReturnStock": pb.ReturnStockRequest(
        order_id="fuzz-order",
        items=[pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=1)],
        restock=True,
    ),
    "BulkUpdateStock": pb.BulkUpdateStockRequest(
        lines=[pb.UpdateStockRequest(product_id="prod-456", quantity=1, operation=pb.ADD)]
    ),
}
ADMIN_METHODS = {
    "UpdateStock",
    "SetStockPolicy",
    "UpsertWarehouse",
    "TransferStock",
    "ReturnStock",
    "BulkUpdateStock",
}
ADMIN = (("authorization", f"Bearer {TOKEN}"),)


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
    ways = ["random", "cut", "flip", "junk", "unknown-field"]
    how = draw(st.sampled_from(ways if valid else ["random", "junk", "unknown-field"]))  # b""
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
    await raw_call(channel, method, body, ADMIN if method in ADMIN_METHODS else ())


async def test_undecodable_bytes_are_invalid_argument_for_every_rpc(
    channel: grpc.aio.Channel, container: Container
) -> None:
    for method in VALID:
        code = await raw_call(channel, method, b"\xff\xff\xff\xff", ADMIN)
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
@given(
    values=st.lists(header_values.filter(valid_header), max_size=3),
    method=st.sampled_from(sorted(ADMIN_METHODS)),
)
async def test_the_admin_rpcs_open_only_to_the_token(
    channel: grpc.aio.Channel, container: Container, values: list[str], method: str
) -> None:
    metadata = tuple(("authorization", v) for v in values)
    code = await raw_call(channel, method, VALID[method].SerializeToString(), metadata)
    first = values[0] if values else ""
    opens = first[:7].lower() == "bearer " and first[7:].strip() == TOKEN
    # the fuzz order was never paid: an admin's ReturnStock gets past the credential and is
    # refused by the order's state
    past_auth = code is grpc.StatusCode.OK or (
        method == "ReturnStock" and code is grpc.StatusCode.FAILED_PRECONDITION
    )
    assert past_auth == opens, (values, code)
    if not opens:
        assert code is grpc.StatusCode.UNAUTHENTICATED


INPUT_FIELDS = {field.name for field in pb.SetStockPolicyRequest.DESCRIPTOR.fields}
INT64 = st.integers(-(2**63), 2**63 - 1)
# around the bounds that matter (0, the item limit, 2**53, 2**62) and anywhere in int64
edges = st.one_of(
    st.integers(-3, 3),
    st.integers(99_990, 100_010),
    st.integers(2**53 - 2, 2**53 + 2),
    st.integers(2**62 - 1, 2**62 + 1),
    INT64,
)
# one in four at the edges, so that enough requests are valid to reach the engine
counts = st.integers(0, 3).flatmap(lambda k: edges if k == 0 else st.integers(0, 20))
# rows of the seed (product, variant, warehouse), and anything
targets = st.one_of(
    st.sampled_from(
        [
            ("prod-456", "", ""),
            ("prod-456", "", "wh-west"),
            ("prod-123", "var-456", "wh-east"),
            ("prod-789", "", "wh-east"),
            ("prod-999", "", "default"),
        ]
    ),
    st.tuples(
        st.sampled_from(["prod-123", "no-such-product", "", " "]) | st.text(max_size=140),
        st.sampled_from(["", "var-456"]) | st.text(max_size=10),
        st.sampled_from(["", "default", "wh-nowhere"]) | st.text(max_size=10),
    ),
)


@st.composite
def policy_requests(draw: st.DrawFn) -> pb.SetStockPolicyRequest:
    product_id, variant_id, warehouse_id = draw(targets)
    request = pb.SetStockPolicyRequest(
        product_id=product_id,
        variant_id=variant_id,
        warehouse_id=warehouse_id,
        safety_stock=draw(counts),
        backorder_limit=draw(counts),
        reason=draw(st.text(max_size=20) | st.text(min_size=500, max_size=600)),
    )
    if draw(st.booleans()):
        request.reorder_point = draw(counts)
    if draw(st.integers(0, 3)) == 0:  # mostly mismatched: FAILED_PRECONDITION
        request.expected_version = draw(st.integers(-2, 5) | INT64)
    if draw(st.booleans()):
        request.idempotency_key = draw(st.sampled_from(["k-1", "k-2", ""]) | st.text(max_size=9))
    return request


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=policy_requests())
async def test_set_stock_policy_with_any_field_values_gets_a_client_answer(
    channel: grpc.aio.Channel, container: Container, request: pb.SetStockPolicyRequest
) -> None:
    call = channel.unary_unary(
        SERVICE + "SetStockPolicy",
        request_serializer=pb.SetStockPolicyRequest.SerializeToString,
        response_deserializer=pb.SetStockPolicyResponse.FromString,
    )
    try:
        answer = await call(request, metadata=ADMIN, timeout=10)
    except grpc.aio.AioRpcError as error:
        event(error.code().name)  # --hypothesis-show-statistics: how often each answer came
        assert error.code() in CLIENT_ERRORS, (request, error.code(), error.details())
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            assert error.details().split(":")[0] in INPUT_FIELDS, error.details()
        return
    event("OK")
    stock = answer.stock
    # a retried idempotency key answers the current level, whatever policy the retry named
    if not request.HasField("idempotency_key") or not request.idempotency_key:
        assert (stock.safety_stock, stock.backorder_limit) == (
            request.safety_stock,
            request.backorder_limit,
        )
        assert stock.HasField("reorder_point") == request.HasField("reorder_point")
    assert stock.sellable == stock.available - stock.safety_stock


# -- ExtendReservation and GetOrder: any order id, any TTL --

RESERVED_ORDER = "fuzz-reserved"
COMMITTED_ORDER = "fuzz-committed"
# mostly the orders that exist (so that OK and FAILED_PRECONDITION come often), and anything
order_ids = st.integers(0, 3).flatmap(
    lambda k: (
        st.text(max_size=140)
        if k == 0
        else st.sampled_from([RESERVED_ORDER, COMMITTED_ORDER, "no-such-order", "", " ", "o" * 129])
    )
)
# around the bounds (0, the default maximum) and anywhere in int64; mostly within them
ttls = st.integers(0, 2).flatmap(
    lambda k: (
        st.one_of(st.integers(-3, 3), st.integers(86_390, 86_410), INT64)
        if k == 0
        else st.integers(1, 3_600)
    )
)


@pytest.fixture
async def orders(channel: grpc.aio.Channel) -> None:
    """A RESERVED and a COMMITTED order of the seed's stock."""
    reserve = channel.unary_unary(
        SERVICE + "ReserveStock",
        request_serializer=pb.ReserveStockRequest.SerializeToString,
        response_deserializer=pb.ReserveStockResponse.FromString,
    )
    commit = channel.unary_unary(
        SERVICE + "CommitReservation",
        request_serializer=pb.CommitReservationRequest.SerializeToString,
        response_deserializer=pb.CommitReservationResponse.FromString,
    )
    for order_id in (RESERVED_ORDER, COMMITTED_ORDER):
        item = pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=1)
        await reserve(pb.ReserveStockRequest(order_id=order_id, items=[item]), timeout=10)
    await commit(pb.CommitReservationRequest(order_id=COMMITTED_ORDER), timeout=10)


def refused(error: grpc.aio.AioRpcError, request: Any, fields: set[str]) -> None:
    event(error.code().name)
    assert error.code() in CLIENT_ERRORS, (request, error.code(), error.details())
    if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
        assert error.details().split(":")[0] in fields, error.details()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order_id=order_ids, ttl=ttls)
async def test_extend_with_any_field_values_gets_a_client_answer(
    channel: grpc.aio.Channel, container: Container, orders: None, order_id: str, ttl: int
) -> None:
    call = channel.unary_unary(
        SERVICE + "ExtendReservation",
        request_serializer=pb.ExtendReservationRequest.SerializeToString,
        response_deserializer=pb.ExtendReservationResponse.FromString,
    )
    request = pb.ExtendReservationRequest(order_id=order_id, ttl_seconds=ttl)
    before = datetime.now(UTC)
    try:
        answer = await call(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        refused(error, request, {"order_id", "ttl_seconds"})
        if order_id == COMMITTED_ORDER and error.code() is grpc.StatusCode.FAILED_PRECONDITION:
            assert "COMMITTED" in error.details()
        return
    event("OK")
    assert order_id == RESERVED_ORDER  # only the RESERVED order may be extended
    assert answer.state == pb.ORDER_STATE_RESERVED
    limits = container.limits
    assert limits.min_ttl_seconds <= ttl <= limits.max_ttl_seconds  # no default, no clamping
    expires = answer.expires_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(seconds=ttl - 2) <= expires
    assert expires <= datetime.now(UTC) + timedelta(seconds=ttl + 1)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order_id=order_ids)
async def test_get_order_with_any_order_id_gets_a_client_answer(
    channel: grpc.aio.Channel, container: Container, orders: None, order_id: str
) -> None:
    call = channel.unary_unary(
        SERVICE + "GetOrder",
        request_serializer=pb.GetOrderRequest.SerializeToString,
        response_deserializer=pb.GetOrderResponse.FromString,
    )
    request = pb.GetOrderRequest(order_id=order_id)
    try:
        answer = await call(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        refused(error, request, {"order_id"})
        assert order_id not in (RESERVED_ORDER, COMMITTED_ORDER)
        return
    event("OK")
    assert order_id in (RESERVED_ORDER, COMMITTED_ORDER) and answer.order_id == order_id
    assert answer.history and answer.history[0].from_state == pb.ORDER_STATE_UNSPECIFIED
    assert answer.history[-1].to_state == answer.state


async def test_the_new_rpcs_leave_the_ledger_sound(
    channel: grpc.aio.Channel, container: Container, orders: None
) -> None:
    requests: list[tuple[str, Any]] = [
        ("ExtendReservation", pb.ExtendReservationRequest(order_id=RESERVED_ORDER, ttl_seconds=5)),
        ("ExtendReservation", pb.ExtendReservationRequest(order_id=COMMITTED_ORDER, ttl_seconds=9)),
        ("ExtendReservation", pb.ExtendReservationRequest(order_id="no-such-order", ttl_seconds=9)),
        ("GetOrder", pb.GetOrderRequest(order_id=COMMITTED_ORDER)),
    ]
    codes = [await raw_call(channel, m, r.SerializeToString()) for m, r in requests]
    assert codes == [
        grpc.StatusCode.OK,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OK,
    ]
    assert await check(container.db) == []


# -- GetStock as_of, ListStock, ListMovements, ListWarehouses, UpsertWarehouse: any values --

INT32 = st.integers(-(2**31), 2**31 - 1)
NOW = int(datetime.now(UTC).timestamp())
# google.protobuf.Timestamp's range is years 1 to 9999; around its ends, around now, anywhere
timestamps = st.builds(
    Timestamp,
    seconds=st.one_of(
        st.integers(NOW - 86_400, NOW + 86_400),
        st.integers(-62_135_596_800 - 2, -62_135_596_800 + 2),
        st.integers(253_402_300_799 - 2, 253_402_300_799 + 2),
        INT64,
    ),
    nanos=st.integers(0, 3).flatmap(
        lambda k: (
            st.one_of(st.sampled_from([-1, 10**9]), INT32)
            if k == 0
            else st.integers(0, 999_999_999)
        )
    ),
)
page_sizes = st.one_of(st.integers(0, 12), st.sampled_from([-1, 999, 1000, 1001]), INT32)
# ids of the seed, and anything (LIKE's wildcards and escape, control characters, long)
ids = st.one_of(
    st.sampled_from(["", "prod-123", "var-456", "wh-east", "default", "fuzz-reserved"]),
    st.sampled_from(["%", "_", "\\", "prod%", "prod_", "pr\\od", "p\x00", "p\n", "é" * 129]),
    st.text(max_size=140),
)


def mostly(usual: list[str]) -> st.SearchStrategy[str]:
    """One of ``usual`` three times in four, else anything ``ids`` draws."""
    return st.integers(0, 3).flatmap(lambda k: ids if k == 0 else st.sampled_from(usual))


def call(channel: grpc.aio.Channel, method: str, response: Any) -> Any:
    request_type = type(VALID[method])
    return channel.unary_unary(
        SERVICE + method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response.FromString,
    )


@st.composite
def tokens(draw: st.DrawFn) -> tuple[str, tuple[int, int] | None]:
    """("", None), or garbage, or (a real token of the request's filters, to be changed at
    (position, step), with a step of 0 leaving it as it is)."""
    how = draw(st.sampled_from(["none", "garbage", "real"]))
    if how == "none":
        return "", None
    if how == "garbage":
        return draw(st.text(max_size=60) | st.sampled_from(["=", "e30", "eyJ2IjoxfQ"])), None
    return "", (draw(st.integers(0, 400)), draw(st.integers(0, 63)))


async def with_token(
    method: Any, request: Any, token: tuple[str, tuple[int, int] | None]
) -> tuple[Any, bool]:
    """``request`` with its page token set as drawn; True when it is a token left as issued."""
    text_, change = token
    if change is None:
        request.page_token = text_
        return request, False
    first = type(request)()
    first.CopyFrom(request)
    first.page_size = 1
    issued = (await method(first, timeout=10)).next_page_token
    at, step = change
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if issued and step:
        at %= len(issued)
        moved = alphabet[(alphabet.index(issued[at]) + step) % len(alphabet)]
        issued = issued[:at] + moved + issued[at + 1 :]
    request.page_token = issued
    return request, not step


@st.composite
def stock_listings(draw: st.DrawFn) -> tuple[pb.ListStockRequest, Any]:
    request = pb.ListStockRequest(
        page_size=draw(page_sizes),
        warehouse_id=draw(mostly(["", "wh-east", "wh-nowhere"])),
        product_id_prefix=draw(mostly(["", "prod-", "prod-1", "p", "prod%", "prod_"])),
        below_reorder_point=draw(st.booleans()),
        out_of_stock=draw(st.booleans()),
        backordered=draw(st.booleans()),
    )
    return request, draw(tokens())


LIST_STOCK_FIELDS = {"page_size", "page_token", "warehouse_id", "product_id_prefix"}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=stock_listings())
async def test_list_stock_with_any_field_values_gets_a_client_answer(
    channel: grpc.aio.Channel, container: Container, drawn: tuple[pb.ListStockRequest, Any]
) -> None:
    method = call(channel, "ListStock", pb.ListStockResponse)
    request, token = drawn
    as_issued = False
    try:
        request, as_issued = await with_token(method, request, token)
        answer = await method(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        refused(error, request, LIST_STOCK_FIELDS)
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            assert not (error.details().startswith("page_token") and token[1] and as_issued)
        return
    event("OK")
    size = request.page_size or 100
    assert 0 <= request.page_size <= 1000 and len(answer.stock) <= size
    for level in answer.stock:
        assert level.product_id.startswith(request.product_id_prefix)
        assert level.warehouse_id == (request.warehouse_id or level.warehouse_id)
        assert not request.out_of_stock or level.sellable <= 0
        assert not request.backordered or level.backordered > 0
        assert not request.below_reorder_point or (
            level.HasField("reorder_point") and level.sellable <= level.reorder_point
        )
    if answer.next_page_token:  # the token goes on, with the same filters
        request.page_token = answer.next_page_token
        await method(request, timeout=10)


@st.composite
def movement_listings(draw: st.DrawFn) -> tuple[pb.ListMovementsRequest, Any]:
    request = pb.ListMovementsRequest(
        page_size=draw(page_sizes),
        product_id=draw(mostly(["", "", "prod-123", "prod-456"])),
        variant_id=draw(mostly(["", "", "var-456"])),
        warehouse_id=draw(mostly(["", "", "wh-east"])),
        order_id=draw(mostly(["", "", RESERVED_ORDER, COMMITTED_ORDER])),
        operation=draw(mostly(["", "", "RESERVE", "COMMIT", "SET", "set"])),
        newest_first=draw(st.booleans()),
    )
    if draw(st.booleans()):
        request.since.CopyFrom(draw(timestamps))
    if draw(st.booleans()):
        request.until.CopyFrom(draw(timestamps))
    return request, draw(tokens())


LIST_MOVEMENTS_FIELDS = {
    "page_size",
    "page_token",
    "product_id",
    "variant_id",
    "warehouse_id",
    "order_id",
    "operation",
    "since",
    "until",
}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=movement_listings())
async def test_list_movements_with_any_field_values_gets_a_client_answer(
    channel: grpc.aio.Channel,
    container: Container,
    orders: None,
    drawn: tuple[pb.ListMovementsRequest, Any],
) -> None:
    method = call(channel, "ListMovements", pb.ListMovementsResponse)
    request, token = drawn
    as_issued = False
    try:
        request, as_issued = await with_token(method, request, token)
        answer = await method(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        refused(error, request, LIST_MOVEMENTS_FIELDS)
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            assert not (error.details().startswith("page_token") and token[1] and as_issued)
        return
    event("OK")
    assert len(answer.movements) <= (request.page_size or 100)
    found = [m.id for m in answer.movements]
    assert found == sorted(found, reverse=request.newest_first) and len(set(found)) == len(found)
    for movement in answer.movements:
        assert movement.product_id == (request.product_id or movement.product_id)
        assert movement.order_id == (request.order_id or movement.order_id)
        assert movement.operation == (request.operation or movement.operation)
    if answer.next_page_token:
        request.page_token = answer.next_page_token
        await method(request, timeout=10)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=targets, as_of=timestamps)
async def test_get_stock_as_of_any_instant_gets_a_client_answer(
    channel: grpc.aio.Channel,
    container: Container,
    target: tuple[str, str, str],
    as_of: Timestamp,
) -> None:
    product_id, variant_id, warehouse_id = target
    request = pb.GetStockRequest(
        product_id=product_id, variant_id=variant_id, warehouse_id=warehouse_id, as_of=as_of
    )
    try:
        answer = await call(channel, "GetStock", pb.GetStockResponse)(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        refused(error, request, {"product_id", "variant_id", "warehouse_id", "as_of"})
        return
    event("OK")
    assert answer.product_id == product_id
    assert answer.available == sum(w.available for w in answer.warehouses)


async def test_list_warehouses_answers(channel: grpc.aio.Channel, container: Container) -> None:
    answer = await call(channel, "ListWarehouses", pb.ListWarehousesResponse)(
        pb.ListWarehousesRequest(), timeout=10
    )
    assert {"wh-east", "wh-west", container.settings.default_warehouse_id} <= {
        w.warehouse_id for w in answer.warehouses
    }


@st.composite
def warehouse_upserts(draw: st.DrawFn) -> pb.UpsertWarehouseRequest:
    # never the seed's warehouses: deactivating one would change what other examples see
    return pb.UpsertWarehouseRequest(
        warehouse_id=draw(st.sampled_from(["fz-1", "fz-2", "", " ", "f" * 129]) | ids)
        .replace("wh-east", "fz-east")
        .replace("default", "fz-default"),
        name=draw(st.sampled_from(["Fuzz", "", " ", "n\n", "x" * 257]) | st.text(max_size=300)),
        priority=draw(st.integers(-2, 200) | INT32),
        active=draw(st.booleans()),
    )


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=warehouse_upserts())
async def test_upsert_warehouse_with_any_field_values_gets_a_client_answer(
    channel: grpc.aio.Channel, container: Container, request: pb.UpsertWarehouseRequest
) -> None:
    try:
        answer = await call(channel, "UpsertWarehouse", pb.UpsertWarehouseResponse)(
            request, metadata=ADMIN, timeout=10
        )
    except grpc.aio.AioRpcError as error:
        refused(error, request, {"warehouse_id", "name", "priority", "active"})
        return
    event("OK")
    assert answer.warehouse == pb.Warehouse(
        warehouse_id=request.warehouse_id,
        name=request.name,
        priority=request.priority,
        active=request.active,
    )


async def test_the_listing_rpcs_leave_the_ledger_sound(
    channel: grpc.aio.Channel, container: Container, orders: None
) -> None:
    requests: list[tuple[str, Any]] = [
        ("ListStock", pb.ListStockRequest(page_size=2)),
        ("ListMovements", pb.ListMovementsRequest(order_id=COMMITTED_ORDER)),
        ("ListMovements", pb.ListMovementsRequest(page_token="garbage")),
        ("ListWarehouses", pb.ListWarehousesRequest()),
        ("UpsertWarehouse", pb.UpsertWarehouseRequest(warehouse_id="fz-new", name="New")),
    ]
    codes = [await raw_call(channel, m, r.SerializeToString(), ADMIN) for m, r in requests]
    assert codes == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
    ]
    assert await check(container.db) == []
