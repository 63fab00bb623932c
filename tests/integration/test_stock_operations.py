"""Stock operations over the gRPC API and the engine: TransferStock, ReturnStock,
BulkUpdateStock, on the real stack (PostgreSQL, the engine, a served API)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from db.seed import seed_demo
from service import invariants
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container, build
from service.domain.commands import TransferStock
from service.domain.errors import FailedPrecondition
from service.domain.values import Sku
from tests.integration.test_api import ADMIN, DEMO, TOKEN, Api, rpc_error, serving

SKU = Sku("prod-123", "var-456")  # 50 in wh-east, 25 in wh-west (db/seed.py)


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


async def rows(db: Any, sql: str, **params: Any) -> list[Any]:
    async with db.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def level(api: Api, warehouse_id: str, **sku: str) -> pb.StockLevel:
    answer = await api.stub.GetStock(pb.GetStockRequest(**(sku or DEMO), warehouse_id=warehouse_id))
    [found] = answer.warehouses
    return found


def transfer(source: str, destination: str, quantity: int, **fields: Any) -> Any:
    return pb.TransferStockRequest(
        **DEMO, from_warehouse=source, to_warehouse=destination, quantity=quantity, **fields
    )


# --- TransferStock -------------------------------------------------------------------------


async def test_a_transfer_moves_free_units_with_two_linked_movements(api: Api) -> None:
    answer = await api.stub.TransferStock(
        transfer("wh-east", "wh-west", 20, reason="rebalance", idempotency_key="t-1"),
        metadata=ADMIN,
    )
    assert (answer.source.available, answer.source.total) == (30, 30)
    assert (answer.destination.available, answer.destination.total) == (45, 45)
    assert answer.transfer_id and not answer.duplicate
    moved = await rows(
        api.container.db,
        "SELECT warehouse_id, operation, quantity, reason FROM stock_movements "
        "WHERE transfer_id = :id ORDER BY id",
        id=answer.transfer_id,
    )
    assert [tuple(row) for row in moved] == [
        ("wh-east", "TRANSFER_OUT", 20, "rebalance"),
        ("wh-west", "TRANSFER_IN", 20, "rebalance"),
    ]
    changed = await rows(
        api.container.db,
        "SELECT payload->>'warehouse_id' FROM outbox WHERE topic = 'stock-changed' "
        "AND payload->>'cause' LIKE 'TRANSFER_%' ORDER BY 1",
    )
    assert [row[0] for row in changed] == ["wh-east", "wh-west"]

    again = await api.stub.TransferStock(
        transfer("wh-east", "wh-west", 20, reason="rebalance", idempotency_key="t-1"),
        metadata=ADMIN,
    )
    assert again.duplicate and again.transfer_id == ""
    assert (await level(api, "wh-east")).available == 30  # a repeated key moves nothing
    [count] = await rows(
        api.container.db, "SELECT count(*) FROM stock_movements WHERE transfer_id IS NOT NULL"
    )
    assert count[0] == 2


async def test_reserved_units_and_the_safety_stock_never_move(api: Api) -> None:
    reserve = pb.ReserveStockRequest(
        order_id="o-held",
        items=[pb.StockItem(**DEMO, quantity=40, warehouse_id="wh-east")],
    )
    await api.stub.ReserveStock(reserve)
    await api.stub.SetStockPolicy(
        pb.SetStockPolicyRequest(**DEMO, warehouse_id="wh-east", safety_stock=4), metadata=ADMIN
    )
    error = await rpc_error(
        api.stub.TransferStock(transfer("wh-east", "wh-west", 7), metadata=ADMIN)
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "6 free (available 10, reserved 40, safety stock 4)" in (error.details() or "")
    answer = await api.stub.TransferStock(transfer("wh-east", "wh-west", 6), metadata=ADMIN)
    assert (answer.source.available, answer.source.reserved, answer.source.total) == (4, 40, 44)


async def test_a_transfer_creates_the_destination_row_and_fills_its_backorders(api: Api) -> None:
    await api.stub.SetStockPolicy(
        pb.SetStockPolicyRequest(product_id="prod-789", warehouse_id="wh-east", backorder_limit=5),
        metadata=ADMIN,
    )
    short = pb.ReserveStockRequest(
        order_id="o-short", items=[pb.StockItem(product_id="prod-789", quantity=8)]
    )
    assert (await api.stub.ReserveStock(short)).reservations[0].backordered == 3
    await api.stub.UpdateStock(
        pb.UpdateStockRequest(
            product_id="prod-789", warehouse_id="wh-west", operation=pb.ADD, quantity=5
        ),
        metadata=ADMIN,
    )
    answer = await api.stub.TransferStock(
        pb.TransferStockRequest(
            product_id="prod-789", from_warehouse="wh-west", to_warehouse="wh-east", quantity=3
        ),
        metadata=ADMIN,
    )
    assert (answer.destination.available, answer.destination.backordered) == (0, 0)
    filled = await rows(
        api.container.db,
        "SELECT count(*) FROM outbox WHERE payload->>'status' = 'BACKORDER_FILLED' "
        "AND key = 'o-short'",
    )
    assert filled[0][0] == 1

    fresh = await api.stub.TransferStock(
        pb.TransferStockRequest(
            product_id="prod-789", from_warehouse="wh-west", to_warehouse="default", quantity=2
        ),
        metadata=ADMIN,
    )
    assert (fresh.destination.warehouse_id, fresh.destination.total) == ("default", 2)


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"from_warehouse": "wh-east", "to_warehouse": "wh-east", "quantity": 1}, "INVALID"),
        ({"from_warehouse": "wh-east", "to_warehouse": "wh-west", "quantity": 0}, "INVALID"),
        ({"from_warehouse": "wh-east", "to_warehouse": "nowhere", "quantity": 1}, "NOT_FOUND"),
    ],
)
async def test_a_bad_transfer_is_refused(api: Api, request_fields: Any, code: str) -> None:
    error = await rpc_error(
        api.stub.TransferStock(pb.TransferStockRequest(**DEMO, **request_fields), metadata=ADMIN)
    )
    assert error.code().name.startswith(code)
    unauthenticated = await rpc_error(api.stub.TransferStock(transfer("wh-east", "wh-west", 1)))
    assert unauthenticated.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_concurrent_transfers_both_ways_with_reservations_running(api: Api) -> None:
    """Two engines (two processes' worth) transfer both ways while orders reserve and release
    in both warehouses: nothing deadlocks, nothing reserved moves, the ledger holds."""
    container = api.container
    async with build(container.settings) as other:
        engines = [container.engine, other.engine]
        moved: list[str] = []

        async def transfers(worker: int) -> None:
            draw = random.Random(worker)
            for n in range(40):
                source, destination = draw.choice([("wh-east", "wh-west"), ("wh-west", "wh-east")])
                command = TransferStock(
                    SKU, source, destination, draw.randint(1, 6), idempotency_key=f"{worker}-{n}"
                )
                try:
                    result = await engines[worker % 2].transfer(command)
                except FailedPrecondition:
                    continue  # what was free had been reserved or moved away meanwhile
                moved.append(result.transfer_id)

        async def orders(worker: int) -> None:
            draw = random.Random(100 + worker)
            for n in range(30):
                order_id = f"o-{worker}-{n}"
                warehouse = draw.choice(["wh-east", "wh-west"])
                request = pb.ReserveStockRequest(
                    order_id=order_id,
                    items=[
                        pb.StockItem(**DEMO, quantity=draw.randint(1, 4), warehouse_id=warehouse)
                    ],
                )
                try:
                    await api.stub.ReserveStock(request)
                except grpc.aio.AioRpcError as error:
                    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
                    continue
                if draw.random() < 0.5:
                    await api.stub.ReleaseReservation(
                        pb.ReleaseReservationRequest(order_id=order_id)
                    )

        await asyncio.wait_for(
            asyncio.gather(*(transfers(w) for w in range(4)), *(orders(w) for w in range(3))),
            timeout=300,
        )
        repeated = await other.engine.transfer(
            TransferStock(SKU, "wh-east", "wh-west", 1, idempotency_key="0-0")
        )
    assert moved and repeated.duplicate
    assert await invariants.check(container.db) == []
    pairs = await rows(
        container.db,
        "SELECT transfer_id, string_agg(operation, ',' ORDER BY id), count(DISTINCT quantity), "
        "count(DISTINCT warehouse_id) FROM stock_movements WHERE transfer_id IS NOT NULL "
        "GROUP BY transfer_id",
    )
    assert len(pairs) == len(moved)
    assert {(ops, quantities, warehouses) for _, ops, quantities, warehouses in pairs} == {
        ("TRANSFER_OUT,TRANSFER_IN", 1, 2)
    }
    stock = await api.stub.GetStock(pb.GetStockRequest(**DEMO))
    by_warehouse = {w.warehouse_id: w for w in stock.warehouses}
    # transfers conserve units; reservations never leave (nothing committed)
    assert by_warehouse["wh-east"].total + by_warehouse["wh-west"].total == 75
    pending = await rows(
        container.db,
        "SELECT warehouse_id, coalesce(sum(quantity), 0) FROM reservations "
        "WHERE status = 'PENDING' GROUP BY warehouse_id",
    )
    for warehouse_id, units in pending:
        assert by_warehouse[warehouse_id].reserved == units


# --- ReturnStock ---------------------------------------------------------------------------


async def paid_order(api: Api, order_id: str, quantity: int, warehouse: str = "wh-west") -> None:
    await api.stub.ReserveStock(
        pb.ReserveStockRequest(
            order_id=order_id,
            items=[pb.StockItem(**DEMO, quantity=quantity, warehouse_id=warehouse)],
        )
    )
    await api.stub.CommitReservation(pb.CommitReservationRequest(order_id=order_id))


def a_return(order_id: str, quantity: int = 0, *, restock: bool = True, **fields: Any) -> Any:
    items = [pb.StockItem(**DEMO, quantity=quantity)] if quantity else []
    return pb.ReturnStockRequest(order_id=order_id, items=items, restock=restock, **fields)


async def test_a_return_puts_units_back_where_they_left_once(api: Api) -> None:
    await paid_order(api, "o-ret", 5)
    assert (await level(api, "wh-west")).total == 20
    answer = await api.stub.ReturnStock(a_return("o-ret", 3, reason="too big"), metadata=ADMIN)
    assert [(r.warehouse_id, r.quantity) for r in answer.returned] == [("wh-west", 3)]
    after = await level(api, "wh-west")
    assert (after.available, after.total) == (23, 23)
    [event] = await rows(
        api.container.db,
        "SELECT payload FROM outbox WHERE key = 'o-ret' AND payload->>'status' = 'RETURNED'",
    )
    assert event[0]["restock"] is True and event[0]["items"][0]["quantity"] == 3

    over = await rpc_error(api.stub.ReturnStock(a_return("o-ret", 3), metadata=ADMIN))
    assert over.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "asked 3, returnable 2" in (over.details() or "")
    rest = await api.stub.ReturnStock(a_return("o-ret", restock=False), metadata=ADMIN)
    assert [r.quantity for r in rest.returned] == [2]
    assert (await level(api, "wh-west")).total == 23  # damaged: recorded, not stock
    nothing = await rpc_error(api.stub.ReturnStock(a_return("o-ret"), metadata=ADMIN))
    assert "nothing left to return" in (nothing.details() or "")
    damaged = await rows(
        api.container.db,
        "SELECT quantity, actor FROM stock_movements WHERE order_id = 'o-ret' "
        "AND operation = 'RETURN_DAMAGED'",
    )
    assert [row[0] for row in damaged] == [2]
    assert damaged[0][1].startswith("token:")  # the admin who booked the return
    order = await api.stub.GetOrder(pb.GetOrderRequest(order_id="o-ret"))
    assert [step.published for step in order.history][-2:] == ["RETURNED", "RETURNED"]
    assert order.state == pb.ORDER_STATE_COMMITTED
    assert await invariants.check(api.container.db) == []


async def test_a_return_with_an_event_id_applies_once(api: Api) -> None:
    await paid_order(api, "o-once", 4)
    first = await api.stub.ReturnStock(a_return("o-once", 1, event_id="r-1"), metadata=ADMIN)
    again = await api.stub.ReturnStock(a_return("o-once", 1, event_id="r-1"), metadata=ADMIN)
    assert not first.duplicate and again.duplicate
    assert (await level(api, "wh-west")).total == 22


@pytest.mark.parametrize("order_id", ["o-unknown", "o-reserved"])
async def test_a_return_of_an_order_not_committed_is_refused(api: Api, order_id: str) -> None:
    await api.stub.ReserveStock(
        pb.ReserveStockRequest(order_id="o-reserved", items=[pb.StockItem(**DEMO, quantity=1)])
    )
    error = await rpc_error(api.stub.ReturnStock(a_return(order_id, 1), metadata=ADMIN))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert ("unknown" if order_id == "o-unknown" else "RESERVED") in (error.details() or "")
    missing = await rpc_error(
        api.stub.ReturnStock(pb.ReturnStockRequest(order_id=order_id), metadata=ADMIN)
    )
    assert missing.code() is grpc.StatusCode.INVALID_ARGUMENT  # restock is required


async def test_cancel_after_commit_still_reports_and_changes_nothing(api: Api) -> None:
    await paid_order(api, "o-cac", 2)
    error = await rpc_error(
        api.stub.ReleaseReservation(pb.ReleaseReservationRequest(order_id="o-cac"))
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert (await level(api, "wh-west")).total == 23


# --- BulkUpdateStock -----------------------------------------------------------------------


def line(quantity: int, key: str, warehouse: str = "wh-east", op: int = pb.ADD) -> Any:
    return pb.UpdateStockRequest(
        **DEMO, warehouse_id=warehouse, operation=op, quantity=quantity, idempotency_key=key
    )


async def test_bulk_update_answers_each_line_on_its_own(api: Api) -> None:
    request = pb.BulkUpdateStockRequest(
        lines=[
            line(5, "b-1"),
            line(-1, "b-2"),
            line(5, "b-3", warehouse="nowhere"),
            line(999, "b-4", op=pb.SUBTRACT),
            line(1, "b-1"),  # the key of the first line: a duplicate, whatever it says
            pb.UpdateStockRequest(**DEMO, warehouse_id="wh-west", operation=pb.SET),
        ]
    )
    answer = await api.stub.BulkUpdateStock(request, metadata=ADMIN)
    codes = [(r.code, r.duplicate) for r in answer.results]
    assert codes == [
        ("OK", False),
        ("INVALID_ARGUMENT", False),
        ("NOT_FOUND", False),
        ("FAILED_PRECONDITION", False),
        ("OK", True),
        ("INVALID_ARGUMENT", False),
    ]
    assert answer.results[1].message.startswith("lines[1].quantity")
    assert answer.results[0].stock.available == 55
    assert (await level(api, "wh-east")).available == 55

    too_many = pb.BulkUpdateStockRequest(lines=[line(1, f"k-{i}") for i in range(1001)])
    error = await rpc_error(api.stub.BulkUpdateStock(too_many, metadata=ADMIN))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_refused_line_does_not_spend_its_idempotency_key(api: Api) -> None:
    subtract = pb.BulkUpdateStockRequest(lines=[line(60, "s-1", op=pb.SUBTRACT)])
    [refused] = (await api.stub.BulkUpdateStock(subtract, metadata=ADMIN)).results
    assert refused.code == "FAILED_PRECONDITION"
    await api.stub.UpdateStock(line(20, "restock"), metadata=ADMIN)
    [applied] = (await api.stub.BulkUpdateStock(subtract, metadata=ADMIN)).results
    assert (applied.code, applied.duplicate, applied.stock.available) == ("OK", False, 10)
    [again] = (await api.stub.BulkUpdateStock(subtract, metadata=ADMIN)).results
    assert (again.code, again.duplicate, again.stock.available) == ("OK", True, 10)
