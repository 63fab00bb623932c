"""The batch's stock lock reads its rows through the SKU index, however large the catalog."""

import json

import pytest
from sqlalchemy import text

from db import ledger
from db.session import driver_transaction
from service.domain.values import Sku

pytestmark = pytest.mark.stack

ROWS = 20_000


async def _catalog(conn) -> None:
    await conn.execute(
        text(
            "INSERT INTO warehouses (id, name, priority, active) VALUES "
            "('default', 'default', 100, true), ('east', 'east', 50, true) "
            "ON CONFLICT DO NOTHING"
        )
    )
    await conn.execute(
        text(
            "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, "
            "total, version) SELECT gen_random_uuid(), 'p-' || (n / 2), "
            "CASE WHEN n % 4 < 2 THEN NULL ELSE 'v' END, "
            "CASE WHEN n % 2 = 0 THEN 'default' ELSE 'east' END, n, 0, n, 1 "
            "FROM generate_series(1, :rows) AS n"
        ),
        {"rows": ROWS},
    )
    await conn.execute(text("ANALYZE stocks"))


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_lock_stocks_uses_the_sku_index_on_a_large_catalog(db_engine):
    wanted = [Sku("p-10", None), Sku("p-11", "v"), Sku("p-9999", None)]
    async with db_engine.begin() as conn:
        await _catalog(conn)
    async with driver_transaction(db_engine) as conn:
        raw = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {ledger.LOCK_STOCKS}",
            [s.product_id for s in wanted],
            [s.variant_id or "" for s in wanted],
        )
        plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
        locked = await ledger.lock_stocks(conn, wanted)

    on_stocks = [n for n in _nodes(plan) if n.get("Relation Name") == "stocks"]
    assert on_stocks, plan
    assert all(n["Node Type"] != "Seq Scan" for n in on_stocks), plan
    assert "uq_stocks_sku_warehouse" in {n.get("Index Name") for n in on_stocks}, plan
    # every row of each SKU, in every warehouse, and nothing else
    rows = sorted((r.sku.product_id, r.sku.variant_id, r.warehouse_id) for r in locked.values())
    assert rows == [
        ("p-10", None, "default"),
        ("p-10", None, "east"),
        ("p-11", "v", "default"),
        ("p-11", "v", "east"),
    ]
