"""Demo data for the dev stack: warehouses and stock for the examples of the README.

Idempotent: rows that exist are left as they are (the dev database survives restarts, and
what a developer changed there stays changed). Each stock row it creates gets its movement.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SEED_ACTOR = "seed"
SEED_REASON = "demo seed"


@dataclass(frozen=True)
class DemoWarehouse:
    id: str
    name: str
    priority: int


@dataclass(frozen=True)
class DemoStock:
    product_id: str
    variant_id: str | None
    warehouse_id: str
    quantity: int


DEMO_WAREHOUSES = (
    DemoWarehouse("wh-east", "East coast", 10),
    DemoWarehouse("wh-west", "West coast", 20),
)


def demo_stocks(default_warehouse_id: str) -> tuple[DemoStock, ...]:
    """Stock for the seed's examples: CheckStock prod-123/var-456, ReserveStock order-789."""
    return (
        DemoStock("prod-123", "var-456", default_warehouse_id, 100),
        DemoStock("prod-123", "var-456", "wh-east", 50),
        DemoStock("prod-123", "var-456", "wh-west", 25),
        DemoStock("prod-123", "var-789", "wh-east", 10),
        DemoStock("prod-456", None, default_warehouse_id, 200),
        DemoStock("prod-456", None, "wh-west", 40),
        DemoStock("prod-789", None, "wh-east", 5),
        DemoStock("prod-999", None, default_warehouse_id, 0),
    )


_INSERT_WAREHOUSE = text(
    "INSERT INTO warehouses (id, name, priority, active) "
    "VALUES (:id, :name, :priority, true) ON CONFLICT (id) DO NOTHING"
)

_INSERT_STOCK = text(
    "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "version) VALUES (:id, :product_id, :variant_id, :warehouse_id, :quantity, 0, :quantity, 1) "
    "ON CONFLICT DO NOTHING RETURNING id"
)

_INSERT_MOVEMENT = text(
    "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, "
    "quantity, available_after, reserved_after, total_after, reason, actor) "
    "VALUES (:stock_id, :product_id, :variant_id, :warehouse_id, 'SET', :quantity, :quantity, "
    "0, :quantity, :reason, :actor)"
)


async def seed_demo(engine: AsyncEngine, default_warehouse_id: str = "default") -> int:
    """Insert the demo warehouses and stocks that are missing; returns the stocks created."""
    created = 0
    async with engine.begin() as conn:
        for warehouse in DEMO_WAREHOUSES:
            await conn.execute(
                _INSERT_WAREHOUSE,
                {"id": warehouse.id, "name": warehouse.name, "priority": warehouse.priority},
            )
        for stock in demo_stocks(default_warehouse_id):
            row = {
                "product_id": stock.product_id,
                "variant_id": stock.variant_id,
                "warehouse_id": stock.warehouse_id,
                "quantity": stock.quantity,
            }
            stock_id = (await conn.execute(_INSERT_STOCK, {"id": uuid.uuid4(), **row})).scalar()
            if stock_id is None:  # already there: leave it as it is
                continue
            await conn.execute(
                _INSERT_MOVEMENT,
                {"stock_id": stock_id, "reason": SEED_REASON, "actor": SEED_ACTOR, **row},
            )
            created += 1
    return created
