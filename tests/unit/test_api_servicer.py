"""The servicer and the error interceptor over a real grpc.aio server, with a fake engine.

These pin the translation (proto <-> domain) and the status mapping without a database;
tests/integration/test_api.py drives the same RPCs against the real engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from service.api import server as grpc_api
from service.api.auth import token_digest
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import limits_from
from service.config import Settings
from service.domain import errors
from service.domain.commands import (
    Commit,
    Extend,
    Release,
    Reserve,
    SetStockPolicy,
    UpdateStock,
)
from service.domain.results import (
    Availability,
    LineOutcome,
    OrderResult,
    OrderView,
    ReservationLine,
    StockLevel,
    StockView,
    Transition,
)
from service.domain.values import (
    Item,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Shortage,
    Sku,
    StockPolicy,
)
from service.orders import OrderQueries
from service.queries import StockQueries

TOKEN = "unit-admin-token"
SKU = Sku("prod-123", "var-456")
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
EXTENDED_TO = datetime(2030, 1, 2, 4, 0, 0, tzinfo=UTC)


def level(warehouse: str = "default", available: int = 7, reserved: int = 3) -> StockLevel:
    return StockLevel("stock-1", SKU, warehouse, available, reserved, available + reserved, 4)


@dataclass
class FakeEngine:
    calls: list[Any] = field(default_factory=list)
    fail: BaseException | None = None
    delay_s: float = 0.0
    backordered: dict[Sku, int] = field(default_factory=dict)  # per SKU, on its reservation
    outcomes: tuple[LineOutcome, ...] = ()  # what a partial reservation answers per line
    extended: bool = True  # whether ExtendReservation moves the deadline

    async def _answer(self, command: Any) -> None:
        self.calls.append(command)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail

    async def reserve(self, command: Reserve) -> OrderResult:
        await self._answer(command)
        lines = tuple(
            ReservationLine(
                f"r{i}",
                item.sku,
                "default",
                item.quantity,
                ReservationStatus.PENDING,
                self.backordered.get(item.sku, 0),
            )
            for i, item in enumerate(command.items)
        )
        return OrderResult(
            command.order_id, OrderState.RESERVED, lines, EXPIRES, lines=self.outcomes
        )

    async def extend(self, command: Extend) -> OrderResult:
        await self._answer(command)
        line = ReservationLine("r0", SKU, "default", 2, ReservationStatus.PENDING)
        if not self.extended:
            return OrderResult(command.order_id, OrderState.RESERVED, (line,), EXPIRES)
        return OrderResult(
            command.order_id, OrderState.RESERVED, (line,), EXTENDED_TO, ResultStatus.EXTENDED
        )

    async def commit(self, command: Commit) -> OrderResult:
        await self._answer(command)
        return OrderResult(command.order_id, OrderState.COMMITTED, duplicate=True)

    async def release(self, command: Release) -> OrderResult:
        await self._answer(command)
        return OrderResult(command.order_id, OrderState.RELEASED)

    async def update_stock(self, command: UpdateStock) -> StockLevel:
        await self._answer(command)
        return level(command.warehouse_id)

    async def set_policy(self, command: SetStockPolicy) -> StockLevel:
        await self._answer(command)
        policy = command.policy
        return replace(
            level(command.warehouse_id),
            safety_stock=policy.safety_stock,
            reorder_point=policy.reorder_point,
            backorder_limit=policy.backorder_limit,
        )


@dataclass
class FakeQueries:
    calls: list[Any] = field(default_factory=list)
    fail: BaseException | None = None
    levels: tuple[StockLevel, ...] = (level("default"), level("east", 1, 0))

    async def get_stock(self, sku: Sku, warehouse_id: str | None) -> StockView:
        self.calls.append((sku, warehouse_id))
        if self.fail is not None:
            raise self.fail
        if sku != SKU:
            raise errors.NotFound(f"no stock of {sku.key}")
        return StockView.of(sku, self.levels)

    async def check_stock(self, items: list[Item]) -> list[Availability]:
        self.calls.append(items)
        if self.fail is not None:
            raise self.fail
        return [
            Availability(item.sku, item.quantity, 8, item.warehouse_id, True, {"default": 8})
            if item.sku == SKU
            else Availability(item.sku, item.quantity, 0, item.warehouse_id, known=False)
            for item in items
        ]


@dataclass
class FakeOrders:
    """GetOrder's reads (service/orders.py's OrderQueries) over views held in memory."""

    views: dict[str, OrderView] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: BaseException | None = None

    async def get_order(self, order_id: str) -> OrderView:
        self.calls.append(order_id)
        if self.fail is not None:
            raise self.fail
        if order_id not in self.views:
            raise errors.NotFound(f"unknown order {order_id}")
        return self.views[order_id]


class _NoDatabase:
    def execution_options(self, **_: Any) -> _NoDatabase:
        return self


class RowQueries(StockQueries):
    """The real reads (service/queries.py) over stock rows held in memory: ``_levels``, their
    one source of rows, is what the cache overrides too."""

    def __init__(
        self, rows: dict[Sku, list[tuple[StockLevel, bool]]], *, allow_split: bool = True
    ) -> None:
        super().__init__(_NoDatabase(), allow_split=allow_split)  # type: ignore[arg-type]
        self.rows = rows

    async def _levels(self, skus: Iterable[Sku]) -> dict[Sku, list[tuple[StockLevel, bool]]]:
        return {sku: self.rows.get(sku, []) for sku in skus}


@dataclass
class Api:
    stub: pb_grpc.InventoryServiceStub
    engine: FakeEngine
    queries: Any  # FakeQueries, or RowQueries
    channel: grpc.aio.Channel
    orders: FakeOrders


@asynccontextmanager
async def serving(queries: Any, admin_tokens: tuple[str, ...] = (TOKEN,)) -> AsyncIterator[Api]:
    settings = Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        admin_token_sha256=[token_digest(token) for token in admin_tokens],
    )
    engine = FakeEngine()
    orders = FakeOrders()
    container = SimpleNamespace(
        settings=settings,
        engine=engine,
        queries=queries,
        orders=orders,
        limits=limits_from(settings),
        db=None,
    )
    server = await grpc_api.start(settings, container)  # type: ignore[arg-type]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Api(pb_grpc.InventoryServiceStub(channel), engine, queries, channel, orders)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serving(FakeQueries()) as running:
        yield running


ADMIN = (("authorization", f"Bearer {TOKEN}"),)


async def code_of(call: Callable[[], Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    return caught.value


def counted(method: str, code: str) -> float:
    labels = {"method": method, "code": code}
    return REGISTRY.get_sample_value("inventory_rpc_requests_total", labels) or 0.0


# -- happy paths: translation both ways --


async def test_check_stock_maps_the_availability(api: Api) -> None:
    answer = await api.stub.CheckStock(
        pb.CheckStockRequest(product_id="prod-123", variant_id="var-456", quantity=5)
    )
    assert answer.available and answer.available_quantity == 8
    assert answer.item.known and answer.item.requested_quantity == 5
    assert dict(answer.item.available_by_warehouse) == {"default": 8}
    assert api.queries.calls == [[Item(SKU, 5, None)]]


async def test_check_stock_of_an_unknown_sku_is_not_found(api: Api) -> None:
    error = await code_of(
        lambda: api.stub.CheckStock(pb.CheckStockRequest(product_id="nope", quantity=1))
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_bulk_check_answers_each_line_in_order_without_merging(api: Api) -> None:
    items = [
        pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=2),
        pb.StockItem(product_id="nope", quantity=1),
        pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=3),
    ]
    answer = await api.stub.BulkCheckStock(pb.BulkCheckStockRequest(items=items))
    assert not answer.all_available
    assert [i.product_id for i in answer.items] == ["prod-123", "nope", "prod-123"]
    assert [i.known for i in answer.items] == [True, False, True]
    assert [i.requested_quantity for i in answer.items] == [2, 1, 3]


async def test_get_stock_lists_warehouses_and_the_total(api: Api) -> None:
    answer = await api.stub.GetStock(
        pb.GetStockRequest(product_id="prod-123", variant_id="var-456")
    )
    assert [w.warehouse_id for w in answer.warehouses] == ["default", "east"]
    assert (answer.available, answer.reserved, answer.total) == (8, 3, 11)
    assert answer.warehouses[0].version == 4
    assert api.queries.calls == [(SKU, None)]


async def test_reserve_maps_the_seed_example(api: Api) -> None:
    request = pb.ReserveStockRequest(
        order_id="order-789",
        items=[
            pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=2),
            pb.StockItem(product_id="prod-456", quantity=1),
        ],
        ttl_seconds=900,
    )
    answer = await api.stub.ReserveStock(request)
    assert answer.state == pb.ORDER_STATE_RESERVED
    assert [r.quantity for r in answer.reservations] == [2, 1]
    assert answer.reservations[0].status == pb.RESERVATION_STATUS_PENDING
    assert answer.reservations[1].variant_id == ""
    assert answer.expires_at.ToDatetime(tzinfo=UTC) == EXPIRES
    [command] = api.engine.calls
    assert command == Reserve(
        "order-789", (Item(SKU, 2), Item(Sku("prod-456"), 1)), ttl_seconds=900
    )


async def test_reserve_without_ttl_uses_the_default(api: Api) -> None:
    await api.stub.ReserveStock(
        pb.ReserveStockRequest(order_id="o1", items=[pb.StockItem(product_id="p", quantity=1)])
    )
    assert api.engine.calls[0].ttl_seconds == Settings().default_ttl_seconds


async def test_commit_and_release_map_state_and_duplicate(api: Api) -> None:
    committed = await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="o1"))
    assert committed.state == pb.ORDER_STATE_COMMITTED and committed.duplicate
    released = await api.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(order_id="o2", reason="customer cancelled")
    )
    assert released.state == pb.ORDER_STATE_RELEASED and not released.duplicate
    assert api.engine.calls == [Commit("o1"), Release("o2", reason="customer cancelled")]


async def test_update_stock_with_the_token_passes_every_field(api: Api) -> None:
    request = pb.UpdateStockRequest(
        product_id="prod-123",
        variant_id="var-456",
        quantity=100,
        operation=pb.ADD,
        reason="Restocking from supplier",
        expected_version=4,
        idempotency_key="k-1",
    )
    answer = await api.stub.UpdateStock(request, metadata=ADMIN)
    assert answer.stock.warehouse_id == "default" and answer.stock.version == 4
    [command] = api.engine.calls
    assert command.warehouse_id == Settings().default_warehouse_id
    assert (command.quantity, command.operation.value, command.reason) == (
        100,
        "ADD",
        "Restocking from supplier",
    )
    assert (command.expected_version, command.idempotency_key) == (4, "k-1")
    assert command.actor.startswith("token:") and TOKEN not in command.actor


async def test_update_stock_absent_optionals_stay_absent(api: Api) -> None:
    request = pb.UpdateStockRequest(product_id="p", quantity=0, operation=pb.SET)
    await api.stub.UpdateStock(request, metadata=ADMIN)
    [command] = api.engine.calls
    assert (command.quantity, command.expected_version, command.idempotency_key) == (0, None, None)


# -- status codes --


@pytest.mark.parametrize(
    "request_",
    [
        pb.UpdateStockRequest(product_id="p", operation=pb.SET),  # quantity absent
        pb.UpdateStockRequest(product_id="p", quantity=1),  # operation unspecified
        pb.UpdateStockRequest(product_id="p", quantity=1, operation=99),  # unknown enum number
        pb.UpdateStockRequest(product_id="", quantity=1, operation=pb.ADD),
        pb.UpdateStockRequest(product_id="p", quantity=0, operation=pb.ADD),
        pb.UpdateStockRequest(product_id="p", quantity=1, operation=pb.ADD, expected_version=-1),
    ],
)
async def test_update_stock_validation(api: Api, request_: pb.UpdateStockRequest) -> None:
    error = await code_of(lambda: api.stub.UpdateStock(request_, metadata=ADMIN))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert api.engine.calls == []


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_update_stock_refuses_without_the_right_token(
    api: Api, metadata: tuple[tuple[str, str], ...], code: grpc.StatusCode
) -> None:
    request = pb.UpdateStockRequest(product_id="p", quantity=1, operation=pb.ADD)
    error = await code_of(lambda: api.stub.UpdateStock(request, metadata=metadata))
    assert error.code() is code
    assert api.engine.calls == []


async def test_invalid_reserve_never_reaches_the_engine(api: Api) -> None:
    bad = [
        pb.ReserveStockRequest(order_id="", items=[pb.StockItem(product_id="p", quantity=1)]),
        pb.ReserveStockRequest(order_id="o", items=[]),
        pb.ReserveStockRequest(order_id="o", items=[pb.StockItem(product_id="p", quantity=0)]),
        pb.ReserveStockRequest(
            order_id="o", items=[pb.StockItem(product_id="p", quantity=1)], ttl_seconds=-5
        ),
    ]
    for request in bad:
        error = await code_of(lambda request=request: api.stub.ReserveStock(request))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, request
        assert error.details()
    assert api.engine.calls == []


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (errors.InvalidArgument("items", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("no order o1"), grpc.StatusCode.NOT_FOUND),
        (errors.WrongState("order o1 is COMMITTED"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.VersionMismatch(3, 4), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.NegativeStock("cannot subtract"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.AlreadyExists("order o1 has other items"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.Unavailable("database unavailable"), grpc.StatusCode.UNAVAILABLE),
        (ConnectionRefusedError("connect to 10.0.0.7:5432"), grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_errors_map_to_their_status(
    api: Api, raised: BaseException, code: grpc.StatusCode
) -> None:
    api.engine.fail = raised
    before = counted("CommitReservation", code.name)
    error = await code_of(
        lambda: api.stub.CommitReservation(pb.CommitReservationRequest(order_id="o1"))
    )
    assert error.code() is code
    assert counted("CommitReservation", code.name) == before + 1
    if isinstance(raised, errors.InventoryError):
        assert error.details() == raised.message
    else:
        assert "10.0.0.7" not in error.details()


async def test_insufficient_stock_carries_the_shortages(api: Api) -> None:
    api.engine.fail = errors.InsufficientStock([Shortage(SKU, 5, 2, "default")])
    request = pb.ReserveStockRequest(
        order_id="o1", items=[pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=5)]
    )
    error = await code_of(lambda: api.stub.ReserveStock(request))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "prod-123:var-456 requested 5 available 2" in error.details()
    status = rpc_status.from_call(error)
    assert status is not None and status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    detail = pb.InsufficientStockDetail()
    assert status.details[0].Unpack(detail)
    [shortage] = detail.shortages
    assert (shortage.product_id, shortage.variant_id, shortage.warehouse_id) == (
        "prod-123",
        "var-456",
        "default",
    )
    assert (shortage.requested_quantity, shortage.available_quantity) == (5, 2)


async def test_an_unexpected_error_is_internal_and_leaks_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.queries.fail = RuntimeError("password=hunter2 at /srv/secret.py")
    before = counted("GetStock", "INTERNAL")
    error = await code_of(lambda: api.stub.GetStock(pb.GetStockRequest(product_id="prod-123")))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    assert "hunter2" not in str(error.trailing_metadata())
    assert counted("GetStock", "INTERNAL") == before + 1
    assert any("hunter2" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_ok_answers_are_counted_and_timed(api: Api) -> None:
    before = counted("GetStock", "OK")
    await api.stub.GetStock(pb.GetStockRequest(product_id="prod-123", variant_id="var-456"))
    assert counted("GetStock", "OK") == before + 1
    timed = REGISTRY.get_sample_value("inventory_rpc_seconds_count", {"method": "GetStock"})
    assert timed is not None and timed >= 1


async def test_an_expired_deadline_is_deadline_exceeded(api: Api) -> None:
    api.engine.delay_s = 0.5
    request = pb.CommitReservationRequest(order_id="o1")
    error = await code_of(lambda: api.stub.CommitReservation(request, timeout=0.05))
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED


# -- stock policies: the new fields, SetStockPolicy --


def with_policy(
    base: StockLevel,
    safety_stock: int = 0,
    reorder_point: int | None = None,
    backorder_limit: int = 0,
    backordered: int = 0,
) -> StockLevel:
    return replace(
        base,
        safety_stock=safety_stock,
        reorder_point=reorder_point,
        backorder_limit=backorder_limit,
        backordered=backordered,
    )


async def test_get_stock_reports_sellable_policy_and_backorders(api: Api) -> None:
    api.queries.levels = (
        with_policy(level("default", 7, 3), safety_stock=2, reorder_point=0, backorder_limit=5),
        # backordered: 2 units promised beyond its stock
        with_policy(level("east", -2, 2), backorder_limit=4, backordered=2),
    )
    answer = await api.stub.GetStock(
        pb.GetStockRequest(product_id="prod-123", variant_id="var-456")
    )
    default, east = answer.warehouses
    assert (default.available, default.sellable, default.safety_stock) == (7, 5, 2)
    assert default.HasField("reorder_point") and default.reorder_point == 0  # 0 is not unset
    assert (default.backorder_limit, default.backordered) == (5, 0)
    assert (east.available, east.sellable, east.backordered, east.backorder_limit) == (-2, -2, 2, 4)
    assert not east.HasField("reorder_point")  # no alert
    assert (answer.available, answer.reserved, answer.total) == (5, 5, 10)
    assert (answer.sellable, answer.backordered) == (3, 2)


async def test_a_level_without_a_policy_reports_the_defaults(api: Api) -> None:
    answer = await api.stub.GetStock(
        pb.GetStockRequest(product_id="prod-123", variant_id="var-456")
    )
    default = answer.warehouses[0]
    assert (default.sellable, default.safety_stock, default.backorder_limit) == (7, 0, 0)
    assert not default.HasField("reorder_point") and default.backordered == 0
    assert answer.sellable == answer.available


async def test_reservations_carry_their_backordered_units(api: Api) -> None:
    api.engine.backordered = {SKU: 3}
    answer = await api.stub.ReserveStock(
        pb.ReserveStockRequest(
            order_id="o1",
            items=[
                pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=5),
                pb.StockItem(product_id="prod-456", quantity=1),
            ],
        )
    )
    assert [(r.quantity, r.backordered) for r in answer.reservations] == [(5, 3), (1, 0)]


def policy_request(**fields: Any) -> pb.SetStockPolicyRequest:
    return pb.SetStockPolicyRequest(**{"product_id": "prod-123", "variant_id": "var-456", **fields})


async def test_set_stock_policy_passes_every_field_and_answers_the_level(api: Api) -> None:
    request = policy_request(
        warehouse_id="east",
        safety_stock=2,
        reorder_point=3,
        backorder_limit=10,
        expected_version=4,
        idempotency_key="policy-1",
        reason="peak season",
    )
    answer = await api.stub.SetStockPolicy(request, metadata=ADMIN)
    [command] = api.engine.calls
    assert command == SetStockPolicy(
        SKU,
        "east",
        StockPolicy(safety_stock=2, reorder_point=3, backorder_limit=10),
        reason="peak season",
        actor=command.actor,
        expected_version=4,
        idempotency_key="policy-1",
    )
    assert command.actor.startswith("token:") and TOKEN not in command.actor
    stock = answer.stock
    assert (stock.warehouse_id, stock.safety_stock, stock.reorder_point) == ("east", 2, 3)
    assert (stock.backorder_limit, stock.sellable, stock.version) == (10, 5, 4)


async def test_set_stock_policy_absent_fields_are_the_defaults(api: Api) -> None:
    answer = await api.stub.SetStockPolicy(policy_request(), metadata=ADMIN)
    [command] = api.engine.calls
    assert command == SetStockPolicy(
        SKU, Settings().default_warehouse_id, StockPolicy(), actor=command.actor
    )
    assert not answer.stock.HasField("reorder_point")


async def test_set_stock_policy_tells_a_reorder_point_of_zero_from_none(api: Api) -> None:
    await api.stub.SetStockPolicy(policy_request(reorder_point=0), metadata=ADMIN)
    [command] = api.engine.calls
    assert command.policy == StockPolicy(reorder_point=0)


@pytest.mark.parametrize(
    ("request_", "field_"),
    [
        pytest.param(policy_request(safety_stock=-1), "safety_stock", id="negative safety"),
        pytest.param(policy_request(reorder_point=-1), "reorder_point", id="negative reorder"),
        pytest.param(
            policy_request(backorder_limit=-1), "backorder_limit", id="negative backorder limit"
        ),
        pytest.param(
            policy_request(safety_stock=Settings().max_quantity_per_item + 1),
            "safety_stock",
            id="safety stock over the item limit",
        ),
        pytest.param(policy_request(product_id=""), "product_id", id="no product"),
        pytest.param(policy_request(warehouse_id="w\x01"), "warehouse_id", id="control char"),
        pytest.param(policy_request(expected_version=-1), "expected_version", id="bad version"),
        pytest.param(policy_request(reason="a\x00b"), "reason", id="NUL in the reason"),
    ],
)
async def test_set_stock_policy_validation_names_the_field(
    api: Api, request_: pb.SetStockPolicyRequest, field_: str
) -> None:
    error = await code_of(lambda: api.stub.SetStockPolicy(request_, metadata=ADMIN))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field_}:"), error.details()
    assert api.engine.calls == []


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", f"Basic {TOKEN}"),)],
)
async def test_set_stock_policy_needs_the_admin_token(
    api: Api, metadata: tuple[tuple[str, str], ...]
) -> None:
    # refused before validation: an invalid request from a stranger learns nothing about it
    for request in (policy_request(safety_stock=1), policy_request(safety_stock=-1)):
        error = await code_of(lambda r=request: api.stub.SetStockPolicy(r, metadata=metadata))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert api.engine.calls == []


async def test_set_stock_policy_without_a_configured_admin_is_permission_denied() -> None:
    async with serving(FakeQueries(), admin_tokens=()) as api:
        error = await code_of(lambda: api.stub.SetStockPolicy(policy_request(), metadata=ADMIN))
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert api.engine.calls == []


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (errors.NotFound("no stock of prod-123:var-456 in east"), grpc.StatusCode.NOT_FOUND),
        (errors.VersionMismatch(4, 5), grpc.StatusCode.FAILED_PRECONDITION),
        (
            errors.FailedPrecondition(
                "backorder_limit: 3 units are backordered on the row, over 2"
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (errors.Unavailable("database unavailable"), grpc.StatusCode.UNAVAILABLE),
        (ConnectionResetError("10.0.0.7:5432"), grpc.StatusCode.UNAVAILABLE),
        (RuntimeError("a bug at 10.0.0.7"), grpc.StatusCode.INTERNAL),
    ],
)
async def test_set_stock_policy_engine_errors_map_to_their_status(
    api: Api, raised: BaseException, code: grpc.StatusCode
) -> None:
    api.engine.fail = raised
    before = counted("SetStockPolicy", code.name)
    error = await code_of(
        lambda: api.stub.SetStockPolicy(policy_request(backorder_limit=2), metadata=ADMIN)
    )
    assert error.code() is code
    assert counted("SetStockPolicy", code.name) == before + 1
    if isinstance(raised, errors.InventoryError):
        assert error.details() == raised.message
    else:
        assert "10.0.0.7" not in error.details()


# -- CheckStock and BulkCheckStock answer by sellable stock (the real reads) --


def row(warehouse: str, available: int, reserved: int = 0, **policy: Any) -> StockLevel:
    return with_policy(level(warehouse, available, reserved), **policy)


ONLY_SAFETY = Sku("safe-only")
ROWS: dict[Sku, list[tuple[StockLevel, bool]]] = {
    SKU: [
        (row("east", 3, safety_stock=1), True),  # sellable 2
        (row("default", 5, safety_stock=5), True),  # sellable 0: all of it is safety stock
        (row("north", -2, 2, backorder_limit=4, backordered=2), True),  # backordered: counts 0
        (row("west", 40), False),  # inactive: not counted
    ],
    ONLY_SAFETY: [(replace(row("default", 5, safety_stock=5), sku=ONLY_SAFETY), True)],
}


@pytest.fixture
async def rows_api() -> AsyncIterator[Api]:
    async with serving(RowQueries(ROWS)) as running:
        yield running


async def test_check_stock_counts_sellable_stock_of_active_warehouses(rows_api: Api) -> None:
    check = rows_api.stub.CheckStock
    enough = await check(
        pb.CheckStockRequest(product_id="prod-123", variant_id="var-456", quantity=2)
    )
    assert enough.available and enough.available_quantity == 2
    assert dict(enough.item.available_by_warehouse) == {"east": 2, "default": 0, "north": 0}
    short = await check(
        pb.CheckStockRequest(product_id="prod-123", variant_id="var-456", quantity=3)
    )
    assert not short.available and short.available_quantity == 2
    east = await check(
        pb.CheckStockRequest(
            product_id="prod-123", variant_id="var-456", quantity=3, warehouse_id="east"
        )
    )
    assert not east.available and east.available_quantity == 2


async def test_a_sku_holding_only_safety_stock_is_not_available(rows_api: Api) -> None:
    answer = await rows_api.stub.CheckStock(
        pb.CheckStockRequest(product_id="safe-only", quantity=1)
    )
    assert not answer.available and answer.available_quantity == 0
    assert answer.item.known  # known, with nothing to sell: not NOT_FOUND
    bulk = await rows_api.stub.BulkCheckStock(
        pb.BulkCheckStockRequest(
            items=[
                pb.StockItem(product_id="safe-only", quantity=1),
                pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=2),
            ]
        )
    )
    assert not bulk.all_available
    assert [(i.available, i.available_quantity) for i in bulk.items] == [(False, 0), (True, 2)]


async def test_without_split_the_best_single_warehouse_by_sellable_stock() -> None:
    async with serving(RowQueries(ROWS, allow_split=False)) as api:
        answer = await api.stub.CheckStock(
            pb.CheckStockRequest(product_id="prod-123", variant_id="var-456", quantity=1)
        )
        assert answer.available and answer.available_quantity == 2


async def test_get_stock_over_the_real_reads_reports_every_row_as_it_is(rows_api: Api) -> None:
    answer = await rows_api.stub.GetStock(
        pb.GetStockRequest(product_id="prod-123", variant_id="var-456")
    )
    assert [(w.warehouse_id, w.available, w.sellable) for w in answer.warehouses] == [
        ("east", 3, 2),
        ("default", 5, 0),
        ("north", -2, -2),
        ("west", 40, 40),
    ]
    assert (answer.available, answer.sellable, answer.backordered) == (46, 40, 2)


# -- the reservation lifecycle: allow_partial, ExtendReservation, GetOrder --


def one_line(**fields: Any) -> pb.ReserveStockRequest:
    return pb.ReserveStockRequest(
        order_id="o1",
        items=[
            pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=5),
            pb.StockItem(product_id="prod-456", quantity=2, warehouse_id="east"),
        ],
        **fields,
    )


async def test_reserve_passes_allow_partial_and_answers_each_line(api: Api) -> None:
    api.engine.outcomes = (
        LineOutcome(SKU, None, requested=5, reserved=3),
        LineOutcome(Sku("prod-456"), "east", requested=2, reserved=2),
    )
    answer = await api.stub.ReserveStock(one_line(allow_partial=True))
    [command] = api.engine.calls
    assert command.allow_partial is True
    assert [
        (o.product_id, o.variant_id, o.warehouse_id, o.requested, o.reserved, o.short)
        for o in answer.lines
    ] == [("prod-123", "var-456", "", 5, 3, 2), ("prod-456", "", "east", 2, 2, 0)]


async def test_reserve_is_all_or_nothing_unless_asked(api: Api) -> None:
    answer = await api.stub.ReserveStock(one_line())
    [command] = api.engine.calls
    assert command.allow_partial is False
    assert list(answer.lines) == []


async def test_extend_maps_the_command_and_the_order_after(api: Api) -> None:
    answer = await api.stub.ExtendReservation(
        pb.ExtendReservationRequest(order_id="o1", ttl_seconds=600)
    )
    assert api.engine.calls == [Extend("o1", 600)]
    assert (answer.order_id, answer.state, answer.extended) == ("o1", pb.ORDER_STATE_RESERVED, True)
    assert answer.expires_at.ToDatetime(tzinfo=UTC) == EXTENDED_TO
    [line] = answer.reservations
    assert (line.reservation_id, line.quantity, line.status) == (
        "r0",
        2,
        pb.RESERVATION_STATUS_PENDING,
    )


async def test_an_extension_that_changed_nothing_is_not_extended(api: Api) -> None:
    api.engine.extended = False
    answer = await api.stub.ExtendReservation(
        pb.ExtendReservationRequest(order_id="o1", ttl_seconds=600)
    )
    assert not answer.extended
    assert answer.expires_at.ToDatetime(tzinfo=UTC) == EXPIRES  # the deadline it had


async def test_extend_needs_no_admin_token(api: Api) -> None:
    # like ReserveStock: no authorization metadata at all, and a wrong token is not looked at
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        request = pb.ExtendReservationRequest(order_id="o1", ttl_seconds=60)
        await api.stub.ExtendReservation(request, metadata=metadata)
    assert api.engine.calls == [Extend("o1", 60), Extend("o1", 60)]


@pytest.mark.parametrize(
    ("request_", "field_"),
    [
        pytest.param(
            pb.ExtendReservationRequest(order_id="o1"), "ttl_seconds", id="no ttl: no default"
        ),
        pytest.param(
            pb.ExtendReservationRequest(order_id="o1", ttl_seconds=-1), "ttl_seconds", id="-1"
        ),
        pytest.param(
            pb.ExtendReservationRequest(order_id="o1", ttl_seconds=Settings().max_ttl_seconds + 1),
            "ttl_seconds",
            id="over the maximum",
        ),
        pytest.param(
            pb.ExtendReservationRequest(order_id="o1", ttl_seconds=-(2**63)),
            "ttl_seconds",
            id="int64 min",
        ),
        pytest.param(
            pb.ExtendReservationRequest(order_id="", ttl_seconds=60), "order_id", id="no order"
        ),
        pytest.param(
            pb.ExtendReservationRequest(order_id="o\x01", ttl_seconds=60),
            "order_id",
            id="a control character",
        ),
    ],
)
async def test_extend_validation_names_the_field(
    api: Api, request_: pb.ExtendReservationRequest, field_: str
) -> None:
    error = await code_of(lambda: api.stub.ExtendReservation(request_))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field_}:"), error.details()
    assert api.engine.calls == []


async def test_extend_out_of_bounds_says_the_bounds(api: Api) -> None:
    bounds = Settings()
    error = await code_of(
        lambda: api.stub.ExtendReservation(
            pb.ExtendReservationRequest(order_id="o1", ttl_seconds=bounds.max_ttl_seconds + 1)
        )
    )
    assert error.details() == (
        f"ttl_seconds: must be between {bounds.min_ttl_seconds} and {bounds.max_ttl_seconds}, "
        f"got {bounds.max_ttl_seconds + 1}"
    )


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (errors.NotFound("order o1 has no reservation"), grpc.StatusCode.NOT_FOUND),
        (errors.WrongState("order o1 is COMMITTED"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unavailable("database unavailable"), grpc.StatusCode.UNAVAILABLE),
        (RuntimeError("a bug at 10.0.0.7"), grpc.StatusCode.INTERNAL),
    ],
)
async def test_extend_errors_map_to_their_status(
    api: Api, raised: BaseException, code: grpc.StatusCode
) -> None:
    api.engine.fail = raised
    before = counted("ExtendReservation", code.name)
    error = await code_of(
        lambda: api.stub.ExtendReservation(
            pb.ExtendReservationRequest(order_id="o1", ttl_seconds=60)
        )
    )
    assert error.code() is code
    assert counted("ExtendReservation", code.name) == before + 1
    if isinstance(raised, errors.InventoryError):
        assert error.details() == raised.message  # "order o1 is COMMITTED": the state named
    else:
        assert error.details() == "internal error"


AT = datetime(2030, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
COMMITTED_VIEW = OrderView(
    order_id="o1",
    state=OrderState.COMMITTED,
    items=(Item(SKU, 3), Item(Sku("prod-456"), 1, "east")),
    reservations=(
        ReservationLine("r1", SKU, "default", 3, ReservationStatus.COMMITTED, backordered=1),
        ReservationLine("r2", Sku("prod-456"), "east", 1, ReservationStatus.COMMITTED),
    ),
    expires_at=None,
    allow_partial=True,
    history=(
        Transition(AT, None, OrderState.RESERVED, ResultStatus.RESERVED, "rpc:ReserveStock"),
        Transition(
            AT + timedelta(seconds=1),
            OrderState.RESERVED,
            OrderState.RESERVED,
            ResultStatus.EXTENDED,
            "rpc:ExtendReservation",
        ),
        Transition(
            AT + timedelta(seconds=2),
            OrderState.RESERVED,
            OrderState.COMMITTED,
            ResultStatus.COMMITTED,
            "evt-paid-1",
        ),
    ),
)


async def test_get_order_maps_the_view(api: Api) -> None:
    api.orders.views["o1"] = COMMITTED_VIEW
    answer = await api.stub.GetOrder(pb.GetOrderRequest(order_id="o1"))
    assert api.orders.calls == ["o1"]
    assert (answer.order_id, answer.state, answer.allow_partial) == (
        "o1",
        pb.ORDER_STATE_COMMITTED,
        True,
    )
    assert not answer.HasField("expires_at")
    assert [(i.product_id, i.variant_id, i.quantity, i.warehouse_id) for i in answer.items] == [
        ("prod-123", "var-456", 3, ""),
        ("prod-456", "", 1, "east"),
    ]
    assert [
        (r.reservation_id, r.warehouse_id, r.quantity, r.backordered, r.status)
        for r in answer.reservations
    ] == [
        ("r1", "default", 3, 1, pb.RESERVATION_STATUS_COMMITTED),
        ("r2", "east", 1, 0, pb.RESERVATION_STATUS_COMMITTED),
    ]
    assert [
        (t.at.ToDatetime(tzinfo=UTC), t.from_state, t.to_state, t.published, t.cause)
        for t in answer.history
    ] == [
        (AT, pb.ORDER_STATE_UNSPECIFIED, pb.ORDER_STATE_RESERVED, "RESERVED", "rpc:ReserveStock"),
        (
            AT + timedelta(seconds=1),
            pb.ORDER_STATE_RESERVED,
            pb.ORDER_STATE_RESERVED,
            "EXTENDED",
            "rpc:ExtendReservation",
        ),
        (
            AT + timedelta(seconds=2),
            pb.ORDER_STATE_RESERVED,
            pb.ORDER_STATE_COMMITTED,
            "COMMITTED",
            "evt-paid-1",
        ),
    ]
    # from the order reads alone: neither the stock reads (the cache) nor the engine
    assert api.queries.calls == [] and api.engine.calls == []


async def test_get_order_reports_the_deadline_and_a_step_that_published_nothing(
    api: Api,
) -> None:
    api.orders.views["o2"] = OrderView(
        "o2",
        OrderState.PAID_EARLY,
        (Item(SKU, 1),),
        (),
        EXPIRES,
        False,
        (Transition(AT, None, OrderState.PAID_EARLY, None, "evt-paid-2"),),
    )
    answer = await api.stub.GetOrder(pb.GetOrderRequest(order_id="o2"))
    assert answer.state == pb.ORDER_STATE_PAID_EARLY and not answer.allow_partial
    assert answer.expires_at.ToDatetime(tzinfo=UTC) == EXPIRES
    [step] = answer.history
    assert (step.published, step.cause) == ("", "evt-paid-2")


@pytest.mark.parametrize(
    ("order_id", "code"),
    [
        ("nobody", grpc.StatusCode.NOT_FOUND),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("o" * 129, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_get_order_refusals(api: Api, order_id: str, code: grpc.StatusCode) -> None:
    error = await code_of(lambda: api.stub.GetOrder(pb.GetOrderRequest(order_id=order_id)))
    assert error.code() is code
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        assert error.details().startswith("order_id:")
        assert api.orders.calls == []
    else:
        assert error.details() == "unknown order nobody"


async def test_get_order_database_down_is_unavailable(api: Api) -> None:
    api.orders.fail = errors.Unavailable("database unavailable")
    error = await code_of(lambda: api.stub.GetOrder(pb.GetOrderRequest(order_id="o1")))
    assert error.code() is grpc.StatusCode.UNAVAILABLE


# -- OrderQueries (service/orders.py): one read, one retry on a fresh connection --


class _Connections:
    """An AsyncEngine's ``execution_options`` and ``connect``, counting connections."""

    def __init__(self) -> None:
        self.opened = 0
        self.options: dict[str, Any] = {}

    def execution_options(self, **options: Any) -> _Connections:
        self.options = options
        return self

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[int]:
        self.opened += 1
        yield self.opened


async def test_order_queries_read_the_ledger_and_retry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[Any] = [ConnectionResetError("10.0.0.7:5432"), COMMITTED_VIEW, None]
    seen: list[tuple[int, str]] = []

    async def load(conn: int, order_id: str) -> OrderView | None:
        seen.append((conn, order_id))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def tombstone(conn: int, order_id: str) -> tuple[OrderState, datetime] | None:
        if order_id == "o3":
            return OrderState.COMMITTED, datetime(2026, 11, 2, tzinfo=UTC)
        return None

    monkeypatch.setattr("service.orders.load_order_view", load)
    monkeypatch.setattr("service.orders.load_tombstone", tombstone)
    db = _Connections()
    orders = OrderQueries(db)  # type: ignore[arg-type]
    assert await orders.get_order("o1") == COMMITTED_VIEW
    assert seen == [(1, "o1"), (2, "o1")]  # the second try on a fresh connection
    with pytest.raises(errors.NotFound, match="unknown order o2"):
        await orders.get_order("o2")
    answers.append(None)
    # a pruned order: NOT_FOUND, saying so and with its final state
    with pytest.raises(errors.NotFound, match=r"o3 was pruned .* 2026-11-02 .*COMMITTED"):
        await orders.get_order("o3")
    assert db.options == {"isolation_level": "AUTOCOMMIT"}


async def test_order_queries_unavailable_after_two_failures_and_bugs_propagate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[BaseException] = [
        ConnectionRefusedError("down"),
        ConnectionRefusedError("still down"),
        RuntimeError("a bug"),
    ]

    async def load(conn: int, order_id: str) -> OrderView | None:
        raise failures.pop(0)

    monkeypatch.setattr("service.orders.load_order_view", load)
    orders = OrderQueries(_Connections())  # type: ignore[arg-type]
    with pytest.raises(errors.Unavailable):
        await orders.get_order("o1")
    with pytest.raises(RuntimeError, match="a bug"):
        await orders.get_order("o1")
    assert failures == []
