"""The reservation lifecycle over the gRPC API: a real server, the real engine, PostgreSQL.

ExtendReservation moves a RESERVED order's deadline (and refuses every other state);
ReserveStock with ``allow_partial`` reserves what each line can get and says so per line;
GetOrder reads an order, its reservations and its history from PostgreSQL. The server and its
helpers are tests/integration/test_api.py's (the demo seed, a server on a free port).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_status import rpc_status

from db.seed import seed_demo
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.domain import validation
from service.domain.commands import Source
from service.domain.results import OrderResult
from service.domain.values import OrderState
from service.invariants import check
from tests.integration.test_api import (
    ADMIN,
    DEMO,
    TOKEN,
    Api,
    reserve_request,
    rpc_error,
    serving,
    totals,
)

SLACK = timedelta(seconds=2)  # deadlines are whole seconds, and the batch takes a moment


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


def extend(order_id: str, ttl: int) -> pb.ExtendReservationRequest:
    return pb.ExtendReservationRequest(order_id=order_id, ttl_seconds=ttl)


async def get_order(api: Api, order_id: str) -> pb.GetOrderResponse:
    answer: pb.GetOrderResponse = await api.stub.GetOrder(pb.GetOrderRequest(order_id=order_id))
    return answer


def steps(order: pb.GetOrderResponse) -> list[tuple[int, int, str, str]]:
    """The history as (from, to, published, cause), oldest first."""
    return [(t.from_state, t.to_state, t.published, t.cause) for t in order.history]


def moments(order: pb.GetOrderResponse) -> list[datetime]:
    return [t.at.ToDatetime(tzinfo=UTC) for t in order.history]


async def put_stock(api: Api, product_id: str, quantity: int) -> None:
    """A new SKU with ``quantity`` units in the default warehouse."""
    request = pb.UpdateStockRequest(product_id=product_id, quantity=quantity, operation=pb.ADD)
    await api.stub.UpdateStock(request, metadata=ADMIN)


# -- ExtendReservation --


async def test_extend_a_reserved_order(api: Api) -> None:
    reserved = await api.stub.ReserveStock(reserve_request("ext-1", ("prod-123", "var-456", 2)))
    before = datetime.now(UTC)
    answer = await api.stub.ExtendReservation(extend("ext-1", 3_600))
    after = datetime.now(UTC)
    assert (answer.order_id, answer.state, answer.extended) == (
        "ext-1",
        pb.ORDER_STATE_RESERVED,
        True,
    )
    expires = answer.expires_at.ToDatetime(tzinfo=UTC)
    assert before + timedelta(seconds=3_600) - SLACK <= expires <= after + timedelta(seconds=3_601)
    assert [(r.reservation_id, r.quantity, r.status) for r in answer.reservations] == [
        (r.reservation_id, r.quantity, pb.RESERVATION_STATUS_PENDING) for r in reserved.reservations
    ]
    assert await totals(api, "prod-123", "var-456") == (173, 2, 175)  # the stock is untouched

    order = await get_order(api, "ext-1")
    assert order.state == pb.ORDER_STATE_RESERVED
    assert order.expires_at.ToDatetime(tzinfo=UTC) == expires
    assert steps(order) == [
        (pb.ORDER_STATE_UNSPECIFIED, pb.ORDER_STATE_RESERVED, "RESERVED", "rpc:ReserveStock"),
        (pb.ORDER_STATE_RESERVED, pb.ORDER_STATE_RESERVED, "EXTENDED", "rpc:ExtendReservation"),
    ]

    # `extended` says whether the deadline moved: at once again, it may well not have
    again = await api.stub.ExtendReservation(extend("ext-1", 3_600))
    moved = again.expires_at.ToDatetime(tzinfo=UTC) != expires
    assert again.extended == moved
    assert len((await get_order(api, "ext-1")).history) == 2 + moved
    assert await check(api.container.db) == []


async def test_extend_an_unknown_order_is_not_found(api: Api) -> None:
    error = await rpc_error(api.stub.ExtendReservation(extend("no-such-order", 60)))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-order" in error.details()


@pytest.mark.parametrize(
    ("settle", "state"),
    [
        pytest.param("CommitReservation", "COMMITTED", id="committed"),
        pytest.param("ReleaseReservation", "RELEASED", id="released"),
    ],
)
async def test_extend_a_settled_order_is_failed_precondition_naming_the_state(
    api: Api, settle: str, state: str
) -> None:
    await api.stub.ReserveStock(reserve_request("ext-settled", ("prod-123", "var-456", 1)))
    if settle == "CommitReservation":
        await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="ext-settled"))
    else:
        await api.stub.ReleaseReservation(pb.ReleaseReservationRequest(order_id="ext-settled"))
    before = await get_order(api, "ext-settled")
    error = await rpc_error(api.stub.ExtendReservation(extend("ext-settled", 600)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"order ext-settled is {state}"
    assert await get_order(api, "ext-settled") == before  # nothing changed, nothing recorded


@pytest.mark.parametrize("ttl", [0, -1, 86_401, 2**63 - 1, -(2**63)])  # 0: no default
async def test_extend_with_a_ttl_out_of_bounds_is_invalid_argument(api: Api, ttl: int) -> None:
    await api.stub.ReserveStock(reserve_request("ext-ttl", ("prod-456", "", 1)))
    before = await get_order(api, "ext-ttl")
    error = await rpc_error(api.stub.ExtendReservation(extend("ext-ttl", ttl)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    limits = api.container.limits
    assert error.details() == (
        f"ttl_seconds: must be between {limits.min_ttl_seconds} and {limits.max_ttl_seconds}, "
        f"got {ttl}"
    )
    assert await get_order(api, "ext-ttl") == before


# -- ReserveStock with allow_partial --


async def test_64_concurrent_partial_reservations_share_a_hot_sku(api: Api) -> None:
    await put_stock(api, "hot", 100)
    wanted = {f"hot-{n}": n % 4 + 1 for n in range(64)}  # 160 units asked for, 100 there

    async def reserve(order_id: str) -> pb.ReserveStockResponse | grpc.aio.AioRpcError:
        request = reserve_request(order_id, ("hot", "", wanted[order_id]))
        request.allow_partial = True
        try:
            return await api.stub.ReserveStock(request)
        except grpc.aio.AioRpcError as error:
            return error

    answers = dict(zip(wanted, await asyncio.gather(*map(reserve, wanted)), strict=True))
    got: dict[str, int] = {}
    for order_id, answer in answers.items():
        if isinstance(answer, grpc.aio.AioRpcError):
            # nothing left for it: refused as an all-or-nothing order would be
            assert answer.code() is grpc.StatusCode.FAILED_PRECONDITION, answer.details()
            status = rpc_status.from_call(answer)
            assert status is not None
            detail = pb.InsufficientStockDetail()
            assert status.details[0].Unpack(detail)
            assert [(s.product_id, s.requested_quantity) for s in detail.shortages] == [
                ("hot", wanted[order_id])
            ]
            continue
        assert answer.state == pb.ORDER_STATE_RESERVED
        [line] = answer.lines
        assert (line.product_id, line.requested) == ("hot", wanted[order_id])
        assert line.reserved + line.short == line.requested
        assert line.reserved >= 1
        assert sum(r.quantity for r in answer.reservations) == line.reserved
        got[order_id] = line.reserved
    assert sum(got.values()) == 100
    assert await totals(api, "hot") == (0, 100, 100)
    assert await check(api.container.db) == []


async def test_a_partial_order_answers_each_line_in_order(api: Api) -> None:
    # prod-789: 5 units (wh-east); prod-456 has plenty
    request = reserve_request("partial-1", ("prod-789", "", 8), ("prod-456", "", 2))
    request.allow_partial = True
    answer = await api.stub.ReserveStock(request)
    assert answer.state == pb.ORDER_STATE_RESERVED
    assert [(o.product_id, o.requested, o.reserved, o.short) for o in answer.lines] == [
        ("prod-789", 8, 5, 3),
        ("prod-456", 2, 2, 0),
    ]
    assert await totals(api, "prod-789") == (0, 5, 5)

    order = await get_order(api, "partial-1")
    assert order.allow_partial
    assert [(i.product_id, i.quantity) for i in order.items] == [("prod-789", 8), ("prod-456", 2)]
    assert sorted((r.product_id, r.quantity) for r in order.reservations) == [
        ("prod-456", 2),
        ("prod-789", 5),
    ]


async def test_an_all_or_nothing_order_answers_no_lines(api: Api) -> None:
    answer = await api.stub.ReserveStock(reserve_request("whole-1", ("prod-456", "", 2)))
    assert answer.state == pb.ORDER_STATE_RESERVED and list(answer.lines) == []
    assert not (await get_order(api, "whole-1")).allow_partial
    error = await rpc_error(api.stub.ReserveStock(reserve_request("whole-2", ("prod-789", "", 8))))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert await totals(api, "prod-789") == (5, 0, 5)


# -- GetOrder: every state, with its history --

RESERVE_STEP = (pb.ORDER_STATE_UNSPECIFIED, pb.ORDER_STATE_RESERVED, "RESERVED", "rpc:ReserveStock")


async def test_get_order_of_a_reserved_order(api: Api) -> None:
    started = datetime.now(UTC)
    reserved = await api.stub.ReserveStock(
        reserve_request("go-reserved", ("prod-123", "var-456", 2), ("prod-456", "", 1), ttl=600)
    )
    order = await get_order(api, "go-reserved")
    assert (order.order_id, order.state, order.allow_partial) == (
        "go-reserved",
        pb.ORDER_STATE_RESERVED,
        False,
    )
    assert [(i.product_id, i.variant_id, i.quantity) for i in order.items] == [
        ("prod-123", "var-456", 2),
        ("prod-456", "", 1),
    ]
    assert sorted((r.reservation_id, r.warehouse_id, r.quantity) for r in order.reservations) == (
        sorted((r.reservation_id, r.warehouse_id, r.quantity) for r in reserved.reservations)
    )
    assert all(r.status == pb.RESERVATION_STATUS_PENDING for r in order.reservations)
    assert all(r.backordered == 0 for r in order.reservations)
    assert order.expires_at == reserved.expires_at
    assert steps(order) == [RESERVE_STEP]
    [at] = moments(order)
    assert started - SLACK <= at <= datetime.now(UTC) + SLACK


async def test_get_order_of_a_committed_order(api: Api) -> None:
    await api.stub.ReserveStock(reserve_request("go-committed", ("prod-123", "var-456", 2)))
    await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="go-committed"))
    order = await get_order(api, "go-committed")
    assert order.state == pb.ORDER_STATE_COMMITTED
    assert [(r.quantity, r.status) for r in order.reservations] == [
        (2, pb.RESERVATION_STATUS_COMMITTED)
    ]
    assert steps(order) == [
        RESERVE_STEP,
        (
            pb.ORDER_STATE_RESERVED,
            pb.ORDER_STATE_COMMITTED,
            "COMMITTED",
            "rpc:CommitReservation",
        ),
    ]
    assert moments(order) == sorted(moments(order))


async def test_get_order_of_a_released_order(api: Api) -> None:
    await api.stub.ReserveStock(reserve_request("go-released", ("prod-456", "", 3)))
    await api.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(order_id="go-released", reason="customer cancelled")
    )
    order = await get_order(api, "go-released")
    assert order.state == pb.ORDER_STATE_RELEASED
    assert [(r.quantity, r.status) for r in order.reservations] == [
        (3, pb.RESERVATION_STATUS_RELEASED)
    ]
    assert steps(order) == [
        RESERVE_STEP,
        (pb.ORDER_STATE_RESERVED, pb.ORDER_STATE_RELEASED, "RELEASED", "rpc:ReleaseReservation"),
    ]
    assert moments(order) == sorted(moments(order))


async def test_get_order_of_an_expired_order(api: Api) -> None:
    await api.stub.ReserveStock(reserve_request("go-expired", ("prod-456", "", 1), ttl=1))
    await asyncio.sleep(1.1)  # past the deadline
    [expired] = await api.container.engine.expire(["go-expired"])
    assert isinstance(expired, OrderResult) and expired.state is OrderState.EXPIRED
    order = await get_order(api, "go-expired")
    assert order.state == pb.ORDER_STATE_EXPIRED
    assert [(r.quantity, r.status) for r in order.reservations] == [
        (1, pb.RESERVATION_STATUS_EXPIRED)
    ]
    assert steps(order) == [
        RESERVE_STEP,
        (pb.ORDER_STATE_RESERVED, pb.ORDER_STATE_EXPIRED, "EXPIRED", "expiry"),
    ]
    first, second = moments(order)
    assert second >= first + timedelta(seconds=1)


async def test_get_order_of_a_rejected_order(api: Api) -> None:
    # an RPC that cannot reserve changes nothing; an order-created event is remembered REJECTED
    container = api.container
    command = validation.reserve(
        "go-rejected",
        [{"product_id": "prod-789", "quantity": 8}],
        None,
        container.limits,
        source=Source.STREAM,
        event_id="evt-created-1",
    )
    [result] = await container.engine.execute_many([command])
    assert isinstance(result, OrderResult) and result.state is OrderState.REJECTED
    order = await get_order(api, "go-rejected")
    assert order.state == pb.ORDER_STATE_REJECTED
    assert [(i.product_id, i.quantity) for i in order.items] == [("prod-789", 8)]
    assert list(order.reservations) == []
    assert steps(order) == [
        (pb.ORDER_STATE_UNSPECIFIED, pb.ORDER_STATE_REJECTED, "REJECTED", "evt-created-1")
    ]


async def test_get_order_of_an_unknown_order_is_not_found(api: Api) -> None:
    error = await rpc_error(get_order(api, "no-such-order"))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(get_order(api, ""))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("order_id:")


async def test_get_order_reads_its_own_writes(api: Api) -> None:
    """From PostgreSQL, never the cache: each answer shows the transition just made."""
    states = []
    await api.stub.ReserveStock(
        reserve_request("go-rw", (DEMO["product_id"], DEMO["variant_id"], 1))
    )
    states.append((await get_order(api, "go-rw")).state)
    await api.stub.ExtendReservation(extend("go-rw", 120))
    states.append((await get_order(api, "go-rw")).state)
    await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="go-rw"))
    states.append((await get_order(api, "go-rw")).state)
    assert states == [pb.ORDER_STATE_RESERVED, pb.ORDER_STATE_RESERVED, pb.ORDER_STATE_COMMITTED]
    assert [step[1] for step in steps(await get_order(api, "go-rw"))] == states
