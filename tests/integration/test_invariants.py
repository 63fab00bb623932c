"""The invariant check finds each kind of damage (and nothing on a healthy ledger)."""

import pytest
from sqlalchemy import text

from service.domain import validation as v
from service.invariants import check

pytestmark = pytest.mark.stack


async def _healthy(container):
    await container.engine.update_stock(
        v.update_stock(
            product_id="p",
            variant_id=None,
            warehouse_id=None,
            operation="SET",
            quantity=10,
            reason="count",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )
    await container.engine.reserve(
        v.reserve("o", [{"product_id": "p", "quantity": 3}], None, container.limits)
    )
    assert await check(container.db) == []


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        ("UPDATE stocks SET available = available + 1, total = total + 1", "movements replay"),
        ("UPDATE reservations SET quantity = 2", "pending reservations sum to 2"),
        ("UPDATE orders SET state = 'RELEASED'", "is RELEASED with 1 pending"),
        ("DELETE FROM orders", "pending for unknown order"),
    ],
)
async def test_each_kind_of_damage_is_reported(container, damage, found):
    await _healthy(container)
    async with container.db.begin() as conn:
        await conn.execute(text(damage))
    problems = await check(container.db)
    assert any(found in problem for problem in problems), problems
