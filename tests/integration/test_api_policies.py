"""Stock policies over the gRPC API: a real server, the real engine, PostgreSQL and Redis.

SetStockPolicy (admin) sets a row's safety stock, reorder point and backorder limit; GetStock
reports them with ``sellable`` and ``backordered``; CheckStock and BulkCheckStock answer by
sellable stock; ReserveStock reports each line's backordered units. The server and
its helpers are tests/integration/test_api.py's (the demo seed, a server on a free port).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from db.seed import seed_demo
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.domain.values import Item, Sku
from service.queries import StockQueries
from tests.integration.test_api import (
    ADMIN,
    DEMO,
    TOKEN,
    Api,
    reserve_request,
    rpc_error,
    serving,
)


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


# prod-789: 5 units, in wh-east only (db/seed.py)
SOLO = {"product_id": "prod-789", "variant_id": ""}
SOLO_SKU = Sku("prod-789")


def policy(warehouse_id: str = "", **fields: object) -> pb.SetStockPolicyRequest:
    """A SetStockPolicy of prod-789 (in wh-east unless told)."""
    target = {**SOLO, "warehouse_id": warehouse_id or "wh-east"}
    return pb.SetStockPolicyRequest(**target, **fields)  # type: ignore[arg-type]


async def stock_in(api: Api, warehouse_id: str, **sku: str) -> pb.StockLevel:
    answer = await api.stub.GetStock(pb.GetStockRequest(**(sku or SOLO), warehouse_id=warehouse_id))
    [level] = answer.warehouses
    return level


async def test_set_stock_policy_then_get_stock_shows_it(api: Api) -> None:
    request = policy(safety_stock=2, reorder_point=3, backorder_limit=4, reason="peak season")
    answer = (await api.stub.SetStockPolicy(request, metadata=ADMIN)).stock
    assert (answer.product_id, answer.warehouse_id) == ("prod-789", "wh-east")
    assert (answer.safety_stock, answer.reorder_point, answer.backorder_limit) == (2, 3, 4)
    assert (answer.available, answer.sellable, answer.backordered) == (5, 3, 0)

    level = await stock_in(api, "wh-east")
    assert level == answer  # the version too: reads see the write
    assert level.HasField("reorder_point")

    cleared = (await api.stub.SetStockPolicy(policy(), metadata=ADMIN)).stock
    assert (cleared.safety_stock, cleared.backorder_limit, cleared.sellable) == (0, 0, 5)
    assert not cleared.HasField("reorder_point")  # not given: no alert, not a reorder point of 0
    assert cleared.version > answer.version
    assert await stock_in(api, "wh-east") == cleared


async def test_set_stock_policy_defaults_to_the_default_warehouse(api: Api) -> None:
    request = pb.SetStockPolicyRequest(**DEMO, safety_stock=10)
    answer = (await api.stub.SetStockPolicy(request, metadata=ADMIN)).stock
    default = api.container.settings.default_warehouse_id
    assert (answer.warehouse_id, answer.safety_stock, answer.sellable) == (default, 10, 90)
    stock = await api.stub.GetStock(pb.GetStockRequest(**DEMO))
    by_warehouse = {w.warehouse_id: (w.available, w.sellable) for w in stock.warehouses}
    assert by_warehouse == {default: (100, 90), "wh-east": (50, 50), "wh-west": (25, 25)}
    assert (stock.available, stock.sellable, stock.backordered) == (175, 165, 0)


async def test_check_stock_answers_by_sellable_stock(api: Api) -> None:
    await api.stub.SetStockPolicy(policy(safety_stock=5), metadata=ADMIN)  # stock 5, safety 5

    answer = await api.stub.CheckStock(pb.CheckStockRequest(**SOLO, quantity=1))
    assert not answer.available and answer.available_quantity == 0
    assert answer.item.known and dict(answer.item.available_by_warehouse) == {"wh-east": 0}
    bulk = await api.stub.BulkCheckStock(
        pb.BulkCheckStockRequest(
            items=[pb.StockItem(**SOLO, quantity=1), pb.StockItem(**DEMO, quantity=1)]
        )
    )
    assert not bulk.all_available
    assert [(i.available, i.available_quantity) for i in bulk.items] == [(False, 0), (True, 175)]
    level = await stock_in(api, "wh-east")
    assert (level.available, level.sellable) == (5, 0)

    # summed over the active warehouses, each by its own sellable stock
    await api.stub.SetStockPolicy(
        pb.SetStockPolicyRequest(**DEMO, safety_stock=100), metadata=ADMIN
    )
    fits = await api.stub.CheckStock(pb.CheckStockRequest(**DEMO, quantity=75))
    assert fits.available and fits.available_quantity == 75
    assert fits.item.available_by_warehouse[api.container.settings.default_warehouse_id] == 0
    short = await api.stub.CheckStock(pb.CheckStockRequest(**DEMO, quantity=76))
    assert not short.available and short.available_quantity == 75


async def test_the_uncached_reads_agree(api: Api) -> None:
    """service/queries.py straight on PostgreSQL (the RPCs above read through the cache)."""
    await api.stub.SetStockPolicy(policy(safety_stock=4, reorder_point=1), metadata=ADMIN)
    reads = StockQueries(api.container.db)
    view = await reads.get_stock(SOLO_SKU, "wh-east")
    [level] = view.warehouses
    assert (level.available, level.sellable, level.safety_stock, level.reorder_point) == (
        5,
        1,
        4,
        1,
    )
    [availability] = await reads.check_stock([Item(SOLO_SKU, 2)])
    assert (availability.available, availability.sufficient) == (1, False)


async def test_compare_and_set(api: Api) -> None:
    before = await stock_in(api, "wh-east")
    set_ = await api.stub.SetStockPolicy(
        policy(safety_stock=1, expected_version=before.version), metadata=ADMIN
    )
    assert set_.stock.version > before.version and set_.stock.safety_stock == 1

    stale = await rpc_error(
        api.stub.SetStockPolicy(
            policy(safety_stock=3, expected_version=before.version), metadata=ADMIN
        )
    )
    assert stale.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "version" in stale.details()
    assert await stock_in(api, "wh-east") == set_.stock  # nothing changed


async def test_a_repeated_idempotency_key_gives_the_same_answer(api: Api) -> None:
    request = policy(safety_stock=2, backorder_limit=1, idempotency_key="policy-42")
    first = await api.stub.SetStockPolicy(request, metadata=ADMIN)
    retried = await api.stub.SetStockPolicy(request, metadata=ADMIN)
    assert retried == first  # not applied twice: the same version
    assert await stock_in(api, "wh-east") == first.stock


async def test_set_stock_policy_needs_the_admin_credential(api: Api, container: Container) -> None:
    request = policy(safety_stock=3)
    missing = await rpc_error(api.stub.SetStockPolicy(request))
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED
    wrong = await rpc_error(
        api.stub.SetStockPolicy(request, metadata=(("authorization", "Bearer nope"),))
    )
    assert wrong.code() is grpc.StatusCode.UNAUTHENTICATED
    async with serving(container, AdminAuth([])) as unconfigured:
        denied = await rpc_error(unconfigured.stub.SetStockPolicy(request, metadata=ADMIN))
        assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    level = await stock_in(api, "wh-east")
    assert (level.safety_stock, level.version) == (0, 1)  # untouched


async def test_invalid_policies_name_the_field(api: Api) -> None:
    for request, field in [
        (policy(safety_stock=-1), "safety_stock"),
        (policy(reorder_point=-1), "reorder_point"),
        (policy(backorder_limit=-1), "backorder_limit"),
        (policy(safety_stock=api.container.settings.max_quantity_per_item + 1), "safety_stock"),
    ]:
        error = await rpc_error(api.stub.SetStockPolicy(request, metadata=ADMIN))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(f"{field}:"), error.details()


async def test_backorders_are_reported_and_bound_the_limit(api: Api) -> None:
    await api.stub.SetStockPolicy(policy(backorder_limit=3), metadata=ADMIN)
    reserved = await api.stub.ReserveStock(reserve_request("order-bo", ("prod-789", "", 7)))
    assert reserved.state == pb.ORDER_STATE_RESERVED
    assert [(r.quantity, r.backordered) for r in reserved.reservations] == [(7, 2)]
    level = await stock_in(api, "wh-east")
    assert (level.available, level.sellable, level.reserved, level.backordered) == (-2, -2, 7, 2)
    stock = await api.stub.GetStock(pb.GetStockRequest(**SOLO))
    assert (stock.sellable, stock.backordered) == (-2, 2)
    check = await api.stub.CheckStock(pb.CheckStockRequest(**SOLO, quantity=1))
    assert not check.available and check.available_quantity == 0  # backordered: nothing to sell

    below = await rpc_error(api.stub.SetStockPolicy(policy(backorder_limit=1), metadata=ADMIN))
    assert below.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "backorder_limit" in below.details()
    assert (await stock_in(api, "wh-east")).backorder_limit == 3  # unchanged

    at_the_units = await api.stub.SetStockPolicy(policy(backorder_limit=2), metadata=ADMIN)
    assert (at_the_units.stock.backorder_limit, at_the_units.stock.backordered) == (2, 2)


async def test_an_unknown_warehouse_is_not_found(api: Api) -> None:
    error = await rpc_error(
        api.stub.SetStockPolicy(policy("wh-nowhere", safety_stock=1), metadata=ADMIN)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
