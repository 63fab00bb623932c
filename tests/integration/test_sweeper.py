"""The expiry sweeper against the real PostgreSQL of the test stack (no broker needed).

Reservations are made through the engine (no stream worker runs, so no schedule event ever
reaches a timer table: exactly what the sweeper is the backstop for) and made overdue by moving
the order's ``expires_at`` back, rather than by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import expiry_sql
from db.expiry_sql import Cursor
from service.bootstrap import Container
from service.config import Settings
from service.domain import validation as v
from service.domain.commands import Commit, Source
from service.domain.errors import Unavailable
from service.domain.results import OrderResult
from service.invariants import check
from service.sweeper import ExpirySweeper
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


async def put_stock(container: Container, product: str, quantity: int) -> None:
    await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=None,
            warehouse_id="default",
            operation="SET",
            quantity=quantity,
            reason="test stock",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


async def reserve(container: Container, order: str, product: str, quantity: int = 1) -> None:
    command = v.reserve(
        order, [{"product_id": product, "quantity": quantity}], 900, container.limits
    )
    await container.engine.reserve(command)


async def overdue(db: AsyncEngine, seconds: float, *orders: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE orders SET expires_at = now() - make_interval(secs => :s) "
                "WHERE order_id = ANY(:ids)"
            ),
            {"s": seconds, "ids": list(orders)},
        )


async def scalar(db: AsyncEngine, sql: str, **params: Any) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def states(db: AsyncEngine) -> dict[str, str]:
    async with db.connect() as conn:
        return dict((await conn.execute(text("SELECT order_id, state FROM orders"))).all())


def catches() -> float:
    return REGISTRY.get_sample_value("inventory_expiry_sweeper_catches_total") or 0.0


def sweeper(settings: Settings, container: Container, **options: Any) -> ExpirySweeper:
    options.setdefault("grace_s", 0.0)
    return ExpirySweeper(settings, container.db, container.engine, **options)


async def test_overdue_reservations_are_expired_and_counted(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 10)
    for order in ("a", "b", "c"):
        await reserve(container, order, "p", 2)
    await overdue(container.db, 5, "a", "b")
    before = catches()

    report = await sweeper(settings, container).sweep()

    assert (report.found, report.expired, report.skipped) == (2, 2, False)
    assert catches() == before + 2
    assert await states(container.db) == {"a": "EXPIRED", "b": "EXPIRED", "c": "RESERVED"}
    assert await scalar(container.db, "SELECT available FROM stocks") == 8
    expired_events = await scalar(
        container.db,
        "SELECT count(*) FROM outbox WHERE payload->>'status' = 'EXPIRED'",
    )
    assert expired_events == 2
    assert await check(container.db) == []
    assert (await sweeper(settings, container).sweep()).found == 0


async def test_the_grace_period_leaves_fresh_deadlines_to_the_timer(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 10)
    await reserve(container, "fresh", "p")
    await reserve(container, "stale", "p")
    await overdue(container.db, 2, "fresh")
    await overdue(container.db, 120, "stale")

    report = await sweeper(settings, container, grace_s=60).sweep()

    assert report.expired == 1
    assert await states(container.db) == {"fresh": "RESERVED", "stale": "EXPIRED"}


async def test_a_commit_that_landed_first_is_left_alone(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 10)
    await reserve(container, "paid", "p", 3)
    await container.engine.commit(Commit("paid", source=Source.API))
    await overdue(container.db, 5, "paid")

    assert (await sweeper(settings, container).sweep()).found == 0
    assert await states(container.db) == {"paid": "COMMITTED"}


async def test_rows_locked_by_a_writer_are_skipped_not_waited_for(
    settings: Settings, container: Container, db_engine: AsyncEngine
) -> None:
    await put_stock(container, "p", 10)
    await reserve(container, "busy", "p")
    await reserve(container, "idle", "p")
    await overdue(container.db, 5, "busy", "idle")
    async with db_engine.begin() as writer:
        await writer.execute(text("SELECT 1 FROM orders WHERE order_id = 'busy' FOR UPDATE"))
        async with container.db.begin() as conn:
            due = await expiry_sql.due_orders(conn, grace_s=0, limit=10, after=Cursor())
        assert [order.order_id for order in due] == ["idle"]


async def test_pages_of_a_chunk_cover_every_due_order(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 100)
    orders = [f"o{i:02d}" for i in range(10)]
    for order in orders:
        await reserve(container, order, "p")
    await overdue(container.db, 5, *orders)

    report = await sweeper(settings, container, chunk=3).sweep()

    assert (report.found, report.expired) == (10, 10)
    assert set((await states(container.db)).values()) == {"EXPIRED"}


async def test_concurrent_sweepers_expire_each_order_once(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 100)
    orders = [f"o{i:02d}" for i in range(20)]
    for order in orders:
        await reserve(container, order, "p")
    await overdue(container.db, 5, *orders)
    before = catches()

    reports = await asyncio.gather(
        *(sweeper(settings, container, chunk=4).sweep() for _ in range(3))
    )

    assert sum(r.expired for r in reports) == 20
    assert catches() == before + 20
    assert set((await states(container.db)).values()) == {"EXPIRED"}
    per_order = await scalar(
        container.db,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM outbox "
        "WHERE payload->>'status' = 'EXPIRED' GROUP BY key) AS c",
    )
    assert per_order == 1
    assert await check(container.db) == []


async def test_the_loop_sweeps_every_interval_until_stopped(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 10)
    await reserve(container, "late", "p")
    await overdue(container.db, 5, "late")
    running = sweeper(settings, container, interval_s=0.1)
    await running.start()
    try:
        await wait_for(lambda: running.caught, within_s=10, what="a sweep that caught the order")
    finally:
        await running.stop()
    assert running.caught == 1
    assert await states(container.db) == {"late": "EXPIRED"}


class DownEngine:
    async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]:
        raise Unavailable("database unavailable")


async def test_an_unavailable_engine_fails_the_round_and_the_next_retries(
    settings: Settings, container: Container
) -> None:
    await put_stock(container, "p", 10)
    await reserve(container, "late", "p")
    await overdue(container.db, 5, "late")

    down = ExpirySweeper(settings, container.db, DownEngine(), grace_s=0)
    assert (await down.sweep()).failed

    assert (await sweeper(settings, container).sweep()).expired == 1
