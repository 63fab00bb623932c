"""ListStock and ListMovements against a real server, the real engine and PostgreSQL.

Paging through 10,000 stock rows while UpdateStock changes random rows (and creates rows
behind and ahead of the cursor) returns every row that existed throughout exactly once, in
order; each filter answers what a direct SQL query answers (whole sets, many pages, also with
a scan budget small enough that pages come back short); bad page sizes, tokens, prefixes and
filters are INVALID_ARGUMENT naming the field. Revision 0004 and the models agree, and the
pages read the indexes it builds.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db import stock_lists
from db.seed import seed_demo
from service.api import listing_mapping
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.domain import listing
from service.ledger_queries import LedgerQueries
from tests.integration.test_api import ADMIN, TOKEN, Api, reserve_request, rpc_error, serving
from tests.scratch_database import DROPPED_BY_0008, migrate, schema_diff

pytestmark = pytest.mark.stack


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


async def sql(db: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with db.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def ids(db: AsyncEngine, statement: str, **params: Any) -> list[str]:
    return [str(row[0]) for row in await sql(db, statement, **params)]


Page = tuple[list[Any], str]


async def every_page(
    fetch: Callable[[str], Awaitable[Page]], *, limit: int = 10_000
) -> tuple[list[Any], int]:
    """(every item of every page, in order; the number of pages), following next_page_token."""
    items: list[Any] = []
    token, pages = "", 0
    while True:
        found, token = await fetch(token)
        items += found
        pages += 1
        assert pages <= limit, "the listing does not end"
        if not token:
            return items, pages


def stock_pages(api: Api, **fields: Any) -> Callable[[str], Awaitable[Page]]:
    async def fetch(token: str) -> Page:
        answer = await api.stub.ListStock(pb.ListStockRequest(page_token=token, **fields))
        return list(answer.stock), answer.next_page_token

    return fetch


def movement_pages(api: Api, **fields: Any) -> Callable[[str], Awaitable[Page]]:
    async def fetch(token: str) -> Page:
        answer = await api.stub.ListMovements(pb.ListMovementsRequest(page_token=token, **fields))
        return list(answer.movements), answer.next_page_token

    return fetch


def byte_key(level: pb.StockLevel) -> tuple[bytes, bytes, bytes, str]:
    """ListStock's order: ids compared byte by byte (the "C" collation), then the stock id."""
    return (
        level.product_id.encode(),
        level.variant_id.encode(),
        level.warehouse_id.encode(),
        level.stock_id,
    )


# -- 10,000 rows, paged while they change --

BULK = (
    "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "version) SELECT gen_random_uuid(), 'bulk-' || lpad((g / 3)::text, 5, '0'), "
    "CASE WHEN g % 2 = 0 THEN NULL ELSE 'v' || (g % 5) END, "
    "(ARRAY[:default, 'wh-east', 'wh-west'])[1 + g % 3], g % 50, 0, g % 50, 1 "
    "FROM generate_series(0, :n - 1) AS g"
)


async def test_paging_10000_rows_while_they_change_returns_each_exactly_once(api: Api) -> None:
    db = api.container.db
    await sql(db, BULK, default=api.container.settings.default_warehouse_id, n=10_000)
    rows = await sql(db, "SELECT id, product_id, variant_id, warehouse_id FROM stocks")
    existing = {str(row.id) for row in rows}
    assert len(existing) == 10_008  # and the seed's 8

    done = asyncio.Event()
    writes = 0

    async def write_randomly() -> None:
        nonlocal writes
        chooser = random.Random(7)
        while not done.is_set():
            row = chooser.choice(rows)
            request = pb.UpdateStockRequest(
                product_id=row.product_id,
                variant_id=row.variant_id or "",
                warehouse_id=row.warehouse_id,
                quantity=1,
                operation=pb.ADD,
                reason="while paging",
            )
            await api.stub.UpdateStock(request, metadata=ADMIN)
            writes += 1

    async def create(product_id: str) -> str:
        request = pb.UpdateStockRequest(product_id=product_id, quantity=3, operation=pb.ADD)
        return (await api.stub.UpdateStock(request, metadata=ADMIN)).stock.stock_id

    writers = [asyncio.create_task(write_randomly()) for _ in range(4)]
    seen: list[pb.StockLevel] = []
    token, pages, behind, ahead = "", 0, "", ""
    writes_between_pages = []
    try:
        while True:
            before = writes
            answer = await api.stub.ListStock(pb.ListStockRequest(page_size=257, page_token=token))
            seen += answer.stock
            pages += 1
            if pages == 1:  # one row sorts before the cursor, one after every row there is
                behind, ahead = await create("aaa-new"), await create("zzz-new")
            token = answer.next_page_token
            if not token:
                break
            await asyncio.sleep(0.01)  # let the writers land between pages
            writes_between_pages.append(writes - before)
    finally:
        done.set()
        await asyncio.gather(*writers)

    assert pages == -(-10_009 // 257)  # the rows that were there, and the one ahead
    assert sum(1 for n in writes_between_pages if n > 0) > 20, writes_between_pages
    stock_ids = [level.stock_id for level in seen]
    assert len(stock_ids) == len(set(stock_ids)), "a row came twice"
    assert set(stock_ids) == existing | {ahead}
    assert behind not in stock_ids
    keys = [byte_key(level) for level in seen]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(level.sellable == level.available - level.safety_stock for level in seen)


async def test_last_pages_and_empty_listings(api: Api) -> None:
    # the seed's 8 rows: a page of exactly 8 is the last (no empty page after it)
    answer = await api.stub.ListStock(pb.ListStockRequest(page_size=8))
    assert len(answer.stock) == 8 and answer.next_page_token == ""
    first = await api.stub.ListStock(pb.ListStockRequest(page_size=4))
    assert len(first.stock) == 4 and first.next_page_token
    second = await api.stub.ListStock(
        pb.ListStockRequest(page_size=4, page_token=first.next_page_token)
    )
    assert len(second.stock) == 4 and second.next_page_token == ""
    assert answer.stock == [*first.stock, *second.stock]
    # page_size 0 is the default (100): every row on one page
    assert len((await api.stub.ListStock(pb.ListStockRequest())).stock) == 8

    nothing = await api.stub.ListStock(pb.ListStockRequest(warehouse_id="wh-nowhere"))
    assert list(nothing.stock) == [] and nothing.next_page_token == ""
    none = await api.stub.ListMovements(pb.ListMovementsRequest(order_id="no-such-order"))
    assert list(none.movements) == [] and none.next_page_token == ""


async def test_a_stock_level_is_the_full_level(api: Api) -> None:
    policy = pb.SetStockPolicyRequest(
        product_id="prod-789", warehouse_id="wh-east", safety_stock=2, reorder_point=4
    )
    await api.stub.SetStockPolicy(policy, metadata=ADMIN)
    listed = await api.stub.ListStock(pb.ListStockRequest(product_id_prefix="prod-789"))
    got = await api.stub.GetStock(pb.GetStockRequest(product_id="prod-789"))
    assert list(listed.stock) == list(got.warehouses)
    [level] = listed.stock
    assert (level.safety_stock, level.reorder_point, level.sellable) == (2, 4, 3)
    no_alert = await api.stub.ListStock(pb.ListStockRequest(product_id_prefix="prod-999"))
    assert not no_alert.stock[0].HasField("reorder_point")


# -- every ListStock filter, against SQL --

PREFIXES = ["pre%fix-", "pre_fix-", "pre\\fix-", "prefix-", "prex-", "pré-", "other-", "p"]
FILTER_ROWS = (
    "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "version, safety_stock, reorder_point, backorder_limit, backordered, deleted_at) "
    "SELECT gen_random_uuid(), (CAST(:prefixes AS text[]))[1 + g % 8] || (g / 8), "
    "CASE WHEN g % 3 = 0 THEN NULL ELSE 'v' || (g % 4) END, "
    "(ARRAY[:default, 'wh-east', 'wh-west'])[1 + (g / 8) % 3], "
    "(g * 7) % 41 - 10, g % 4, (g * 7) % 41 - 10 + g % 4, 1, g % 3, "
    "CASE WHEN g % 4 = 0 THEN NULL ELSE g % 9 END, 20, "
    "CASE WHEN (g * 7) % 41 < 10 THEN 10 - (g * 7) % 41 WHEN g % 5 = 0 THEN 1 ELSE 0 END, "
    "CASE WHEN g % 97 = 0 THEN now() END "
    "FROM generate_series(0, 1999) AS g"
)
# each filter as plain SQL, written apart from db/stock_lists.py
STOCK_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({}, "true"),
    ({"warehouse_id": "wh-east"}, "warehouse_id = 'wh-east'"),
    ({"product_id_prefix": "pre%"}, "left(product_id, 4) = 'pre%'"),
    ({"product_id_prefix": "pre_"}, "left(product_id, 4) = 'pre_'"),
    ({"product_id_prefix": "pre\\"}, "left(product_id, 4) = 'pre\\'"),
    ({"product_id_prefix": "pre"}, "left(product_id, 3) = 'pre'"),
    ({"product_id_prefix": "pr"}, "left(product_id, 2) = 'pr'"),
    ({"product_id_prefix": "pré"}, "left(product_id, 3) = 'pré'"),
    ({"product_id_prefix": "p1"}, "left(product_id, 2) = 'p1'"),
    ({"product_id_prefix": "nothing"}, "false"),
    (
        {"below_reorder_point": True},
        "reorder_point IS NOT NULL AND available - safety_stock <= reorder_point",
    ),
    ({"out_of_stock": True}, "available - safety_stock <= 0"),
    ({"backordered": True}, "backordered > 0"),
    (
        {"warehouse_id": "wh-west", "product_id_prefix": "pre", "out_of_stock": True},
        "warehouse_id = 'wh-west' AND left(product_id, 3) = 'pre' AND available <= safety_stock",
    ),
    (
        {"below_reorder_point": True, "out_of_stock": True, "backordered": True},
        "reorder_point IS NOT NULL AND available - safety_stock <= reorder_point "
        "AND available - safety_stock <= 0 AND backordered > 0",
    ),
]


@pytest.fixture
async def varied_stock(api: Api) -> Api:
    await sql(
        api.container.db,
        FILTER_ROWS,
        prefixes=PREFIXES,
        default=api.container.settings.default_warehouse_id,
    )
    return api


@pytest.mark.parametrize(("fields", "where"), STOCK_FILTERS)
async def test_each_stock_filter_answers_what_sql_answers(
    varied_stock: Api, fields: dict[str, Any], where: str
) -> None:
    api = varied_stock
    expected = await ids(
        api.container.db, f"SELECT id FROM stocks WHERE deleted_at IS NULL AND ({where})"
    )
    assert where in ("false", "true") or 0 < len(expected) < 2_008  # each filter filters
    listed, pages = await every_page(stock_pages(api, page_size=97, **fields))
    assert sorted(level.stock_id for level in listed) == sorted(expected)
    keys = [byte_key(level) for level in listed]
    assert keys == sorted(keys)
    assert pages == max(1, -(-len(expected) // 97))  # full pages: the budget is never hit

    # a scan budget of 50 rows: pages come back short (or empty), the rows are the same
    short = LedgerQueries(api.container.db, scan_budget=50)
    found: list[str] = []
    after: str | None = ""
    budget_pages = 0
    while after is not None:
        request = pb.ListStockRequest(page_size=20, page_token=after, **fields)
        page = await short.list_stock(listing_mapping.list_stock(request, api.container.limits))
        found += [level.stock_id for level in page.items]
        after, budget_pages = page.next, budget_pages + 1
        assert budget_pages < 500
    assert found == [level.stock_id for level in listed]


# -- ListMovements --

SYNTHETIC = (
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, reason, order_id, actor, "
    "created_at) SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, "
    "(CAST(:operations AS text[]))[1 + (g / 8) % 8], g % 10 + 1, g, g % 3, g + g % 3, "
    "CASE WHEN g % 5 = 0 THEN 'reason ' || g END, "
    "CASE WHEN g % 3 <> 0 THEN 'ord-' || (g % 50) END, 'tester', "
    "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' "
    "FROM generate_series(1, 3000) AS g JOIN LATERAL (SELECT * FROM stocks "
    "ORDER BY product_id, coalesce(variant_id, ''), warehouse_id OFFSET g % 8 LIMIT 1) AS s ON true"
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SINCE, UNTIL = T0 + timedelta(seconds=700), T0 + timedelta(seconds=1900)


def stamp(moment: datetime, nanos: int = 0) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    value.nanos += nanos
    return value


# (request fields, the same filter in SQL)
MOVEMENT_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({}, "true"),
    ({"product_id": "prod-123"}, "product_id = 'prod-123'"),
    (
        {"product_id": "prod-123", "variant_id": "var-456"},
        "product_id = 'prod-123' AND variant_id = 'var-456'",
    ),
    ({"product_id": "prod-456"}, "product_id = 'prod-456'"),
    (
        {"product_id": "prod-123", "warehouse_id": "wh-east"},
        "product_id = 'prod-123' AND warehouse_id = 'wh-east'",
    ),
    ({"warehouse_id": "wh-west"}, "warehouse_id = 'wh-west'"),
    ({"order_id": "ord-7"}, "order_id = 'ord-7'"),
    (
        {"order_id": "ord-7", "product_id": "prod-123"},
        "order_id = 'ord-7' AND product_id = 'prod-123'",
    ),
    ({"order_id": "order-a"}, "order_id = 'order-a'"),
    ({"operation": "POLICY"}, "operation = 'POLICY'"),
    (
        {"operation": "RESERVE", "warehouse_id": "wh-east"},
        "operation = 'RESERVE' AND warehouse_id = 'wh-east'",
    ),
    ({"since": stamp(SINCE)}, f"created_at >= '{SINCE.isoformat()}'"),
    ({"until": stamp(UNTIL)}, f"created_at < '{UNTIL.isoformat()}'"),
    # nanoseconds round up: a movement stamped at SINCE is before SINCE + 1 ns
    ({"since": stamp(SINCE, 1)}, f"created_at > '{SINCE.isoformat()}'"),
    ({"until": stamp(UNTIL, 1)}, f"created_at <= '{UNTIL.isoformat()}'"),
    (
        {
            "product_id": "prod-123",
            "operation": "COMMIT",
            "since": stamp(SINCE),
            "until": stamp(UNTIL),
        },
        "product_id = 'prod-123' AND operation = 'COMMIT' "
        f"AND created_at >= '{SINCE.isoformat()}' AND created_at < '{UNTIL.isoformat()}'",
    ),
]


@pytest.fixture
async def ledger(api: Api) -> Api:
    """The seed's movements, real ones (reserve, commit, release, update, policy) and 3,000
    synthetic ones spread over the seed's rows."""
    await api.stub.ReserveStock(reserve_request("order-a", ("prod-123", "var-456", 2)))
    await api.stub.CommitReservation(pb.CommitReservationRequest(order_id="order-a"))
    await api.stub.ReserveStock(reserve_request("order-b", ("prod-456", "", 1)))
    await api.stub.ReleaseReservation(pb.ReleaseReservationRequest(order_id="order-b"))
    update = pb.UpdateStockRequest(product_id="prod-999", quantity=4, operation=pb.ADD)
    await api.stub.UpdateStock(update, metadata=ADMIN)
    policy = pb.SetStockPolicyRequest(product_id="prod-999", safety_stock=1)
    await api.stub.SetStockPolicy(policy, metadata=ADMIN)
    await sql(api.container.db, SYNTHETIC, operations=list(listing.MOVEMENT_OPERATIONS))
    return api


@pytest.mark.parametrize(("fields", "where"), MOVEMENT_FILTERS)
@pytest.mark.parametrize("newest_first", [False, True])
async def test_each_movement_filter_answers_what_sql_answers(
    ledger: Api, fields: dict[str, Any], where: str, newest_first: bool
) -> None:
    api = ledger
    order = "DESC" if newest_first else "ASC"
    expected = [
        int(i)
        for i in await ids(
            api.container.db, f"SELECT id FROM stock_movements WHERE {where} ORDER BY id {order}"
        )
    ]
    assert expected
    listed, _ = await every_page(
        movement_pages(api, page_size=37, newest_first=newest_first, **fields)
    )
    assert [m.id for m in listed] == expected

    # a scan budget of 40 rows: the same movements, over short pages
    short = LedgerQueries(api.container.db, scan_budget=40)
    found: list[int] = []
    token: str | None = ""
    while token is not None:
        request = pb.ListMovementsRequest(
            page_size=9, page_token=token, newest_first=newest_first, **fields
        )
        page = await short.list_movements(
            listing_mapping.list_movements(request, api.container.limits)
        )
        assert len(page.items) <= 9
        found += [m.id for m in page.items]
        token = page.next
    assert found == expected


async def test_a_movement_carries_every_field_of_its_row(ledger: Api) -> None:
    api = ledger
    rows = await sql(api.container.db, "SELECT * FROM stock_movements ORDER BY id")
    listed, pages = await every_page(movement_pages(api, page_size=1000))
    assert pages == 4
    assert len(listed) == len(rows)
    for movement, row in zip(listed, rows, strict=True):
        assert movement == pb.Movement(
            id=row.id,
            stock_id=str(row.stock_id),
            product_id=row.product_id,
            variant_id=row.variant_id or "",
            warehouse_id=row.warehouse_id,
            operation=row.operation,
            quantity=row.quantity,
            available_after=row.available_after,
            reserved_after=row.reserved_after,
            total_after=row.total_after,
            reason=row.reason or "",
            order_id=row.order_id or "",
            actor=row.actor,
            created_at=stamp(row.created_at),
        )
    committed = [m for m in listed if m.order_id == "order-a" and m.operation == "COMMIT"]
    assert [(m.product_id, m.variant_id, m.quantity) for m in committed] == [
        ("prod-123", "var-456", 2)
    ]


async def test_new_movements_come_ahead_of_an_oldest_first_cursor(ledger: Api) -> None:
    api = ledger
    first = await api.stub.ListMovements(pb.ListMovementsRequest(page_size=10))
    update = pb.UpdateStockRequest(product_id="prod-999", quantity=1, operation=pb.ADD)
    await api.stub.UpdateStock(update, metadata=ADMIN)
    rest, _ = await every_page(movement_pages(api, page_size=1000), limit=10)
    # the next pages of the first one's token reach the new movement too
    tail, _ = await every_page(_after(api, first.next_page_token))
    assert [m.id for m in [*first.movements, *tail]] == [m.id for m in rest]
    assert tail[-1].operation == "ADD" and tail[-1].product_id == "prod-999"


def _after(api: Api, token: str) -> Callable[[str], Awaitable[Page]]:
    fetch = movement_pages(api, page_size=1000)
    return lambda next_token: fetch(next_token or token)


# -- refused --


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ListStockRequest(page_size=-1), "page_size"),
        (pb.ListStockRequest(page_size=1001), "page_size"),
        (pb.ListStockRequest(page_token="garbage"), "page_token"),
        (pb.ListStockRequest(page_token="eyJ2IjoxfQ"), "page_token"),  # {"v":1}
        (pb.ListStockRequest(product_id_prefix="p" * 129), "product_id_prefix"),
        (pb.ListStockRequest(product_id_prefix="p\x07"), "product_id_prefix"),
        (pb.ListStockRequest(warehouse_id=" "), "warehouse_id"),
        (pb.ListMovementsRequest(page_size=-5), "page_size"),
        (pb.ListMovementsRequest(page_size=2**31 - 1), "page_size"),
        (pb.ListMovementsRequest(page_token="%%%"), "page_token"),
        (pb.ListMovementsRequest(operation="reserve"), "operation"),
        (pb.ListMovementsRequest(variant_id="var-456"), "variant_id"),
        (pb.ListMovementsRequest(order_id="o" * 129), "order_id"),
        (pb.ListMovementsRequest(since=stamp(UNTIL), until=stamp(SINCE)), "until"),
        (pb.ListMovementsRequest(since=Timestamp(seconds=2**62)), "since"),
        (pb.ListMovementsRequest(until=Timestamp(seconds=0, nanos=-1)), "until"),
        (
            pb.ListMovementsRequest(since=Timestamp(seconds=253_402_300_799, nanos=999_999_999)),
            "since",
        ),
    ],
)
async def test_bad_requests_are_invalid_argument_naming_the_field(
    api: Api, request_: Any, field: str
) -> None:
    call = (
        api.stub.ListStock if isinstance(request_, pb.ListStockRequest) else api.stub.ListMovements
    )
    error = await rpc_error(call(request_))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").split(":")[0] == field, error.details()


async def test_tokens_are_refused_with_other_filters_or_on_the_other_method(ledger: Api) -> None:
    api = ledger
    stock = await api.stub.ListStock(pb.ListStockRequest(page_size=2, warehouse_id="wh-east"))
    moved = await api.stub.ListMovements(pb.ListMovementsRequest(page_size=2, newest_first=True))
    assert stock.next_page_token and moved.next_page_token
    refusals = [
        api.stub.ListStock(pb.ListStockRequest(page_token=stock.next_page_token)),
        api.stub.ListStock(
            pb.ListStockRequest(page_token=stock.next_page_token, warehouse_id="wh-west")
        ),
        api.stub.ListStock(pb.ListStockRequest(page_token=moved.next_page_token)),
        api.stub.ListMovements(pb.ListMovementsRequest(page_token=moved.next_page_token)),
        api.stub.ListMovements(pb.ListMovementsRequest(page_token=stock.next_page_token)),
        api.stub.ListMovements(
            pb.ListMovementsRequest(page_token=moved.next_page_token[:-2], newest_first=True)
        ),
    ]
    for refusal in refusals:
        error = await rpc_error(refusal)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("page_token:"), error.details()
    # with its own filters (any page size) the token goes on
    again = await api.stub.ListStock(
        pb.ListStockRequest(page_size=50, warehouse_id="wh-east", page_token=stock.next_page_token)
    )
    assert [s.stock_id for s in again.stock] and again.next_page_token == ""


# -- revision 0004 and the plans --


# what the models hold beyond revision 0004 (tests/integration/test_migration_0005.py)
ADDED_BY_0005 = {
    "order_tombstones",
    "ix_order_tombstones_pruned_at",
    "ix_orders_finished_updated_at",
    "ix_processed_events_processed_at",
}


async def test_the_models_mirror_revision_0004(
    scratch: tuple[str, AsyncEngine],
) -> None:
    url, engine = scratch
    await migrate(url, "0003")
    async with engine.connect() as conn:
        before = await conn.run_sync(schema_diff)
    # the comparison sees what 0004 adds (so an empty diff below means something)
    assert {d[1].name for d in before if d[0] == "add_index"} - ADDED_BY_0005 == {
        "ix_stocks_listing",
        "ix_stocks_warehouse_listing",
        "ix_stock_movements_order_id_id",
        "ix_stock_movements_stock_id_created_at",
    }
    await migrate(url, "0004")
    async with engine.connect() as conn:
        assert without_later_revisions(await conn.run_sync(schema_diff)) == []
        definitions = await conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_stocks_listing'")
        )
        assert 'product_id COLLATE "C"' in definitions.scalar_one()
    # down and up again: the revision runs on a database it was downgraded from
    await migrate(url, "0003", down=True)
    async with engine.connect() as conn:
        assert len(without_later_revisions(await conn.run_sync(schema_diff))) == 4
    await migrate(url, "head")
    async with engine.connect() as conn:
        assert await conn.run_sync(schema_diff) == []


# what revisions after 0004 change: the columns of 0006 (tests/integration/
# test_stock_operations_schema.py), the tables and indexes of 0005 (ADDED_BY_0005), the index
# 0008 drops (DROPPED_BY_0008)
LATER_COLUMNS = {("reservations", "returned"), ("stock_movements", "transfer_id")}


def without_later_revisions(diff: list[Any]) -> list[Any]:
    return [d for d in diff if not _later(d)]


def _later(difference: Any) -> bool:
    if difference[0] == "add_column":
        return (difference[2], difference[3].name) in LATER_COLUMNS
    return getattr(difference[1], "name", None) in {*ADDED_BY_0005, DROPPED_BY_0008}


# three movements for each stock row, one in two for an order (30,000 with BULK's rows)
SPREAD = (
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, order_id, actor) "
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, 'ADD', 1, 1, 0, 1, "
    "CASE WHEN g % 2 = 0 THEN 'ord-' || g || '-' || s.product_id END, 'tester' "
    "FROM stocks s CROSS JOIN generate_series(1, 3) AS g"
)


def _plan(connection: Connection, statement: Any, params: dict[str, Any]) -> str:
    rows = connection.execute(text(f"EXPLAIN {statement}"), params)
    return "\n".join(row[0] for row in rows)


def _without_empty_partitions(plan: str) -> str:
    """The plan less its scans of empty movement partitions (the months ahead, the DEFAULT
    one), which the planner reads whole: they hold nothing."""
    kept: list[str] = []
    skipping = False
    for line in plan.splitlines():
        scan = "Seq Scan on stock_movements_" in line and "rows=1 " in line
        if scan or (skipping and line.lstrip().startswith("Filter:")):
            skipping = True
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept)


async def test_pages_read_the_indexes_not_the_tables(api: Api) -> None:
    db = api.container.db
    await sql(db, BULK, default=api.container.settings.default_warehouse_id, n=10_000)
    await sql(db, SPREAD)  # a ledger like a real one: every row has movements
    # a small warehouse: its rows are read from its own index
    await sql(
        db, "INSERT INTO warehouses (id, name, priority, active) VALUES ('wh-tiny', 't', 5, true)"
    )
    await sql(db, BULK.replace(":default", "'wh-tiny'").replace("bulk-", "tiny-"), n=20)
    await sql(db, "ANALYZE stocks")
    await sql(db, "ANALYZE stock_movements")
    after = {
        "after_product": "bulk-01000",
        "after_variant": "",
        "after_warehouse": "wh-east",
        "after_id": str(uuid.UUID(int=0)),
    }
    cases = [
        (
            stock_lists._stock_statement(
                warehouse=False, prefix=False, bounded=False, after=True, flags=()
            ),
            after,
            "ix_stocks_listing",
        ),
        (
            stock_lists._stock_statement(
                warehouse=False, prefix=True, bounded=True, after=False, flags=("out_of_stock",)
            ),
            {"prefix_low": "bulk-02", "prefix_high": "bulk-03", "prefix_pattern": "bulk-02%"},
            "ix_stocks_listing",
        ),
        (
            stock_lists._stock_statement(
                warehouse=True, prefix=False, bounded=False, after=True, flags=()
            ),
            after | {"warehouse_id": "wh-tiny"},
            "ix_stocks_warehouse_listing",
        ),
        (
            stock_lists._movement_statement(("order_id",), True, True),
            {"order_id": "ord-7", "after": 2**62},
            "ix_stock_movements_order_id_id",
        ),
        (
            stock_lists._movement_statement(("product_id",), False, True),
            {"product_id": "prod-123", "after": 100},
            "ix_stock_movements_stock_id",
        ),
    ]
    async with db.connect() as conn:
        for statement, params, index in cases:
            plan = await conn.run_sync(
                _plan, statement, {"limit": 101, "budget": stock_lists.SCAN_BUDGET, **params}
            )
            plan = _without_empty_partitions(plan)
            # a month's copy of an index is named for its partition and columns
            month_copy = re.sub(r"^ix_stock_movements_(.*)$", r"_p\\d{6}_\1", index)
            assert re.search(re.escape(index) + "|" + month_copy, plan), plan
            assert "Seq Scan" not in plan, plan
            # over stock_movements' months, an Append of index range scans, sorted
            assert (
                "Sort Key" not in plan
                or "Incremental Sort" in plan
                or "Nested Loop" in plan
                or "Append" in plan
            ), plan
