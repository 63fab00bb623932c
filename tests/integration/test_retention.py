"""Retention against the real PostgreSQL: what the pruner deletes, what it keeps, what a late
event for a pruned order does, and the movement partitions. Rows are aged by SQL (no waiting):
the pruner compares them with the database's now()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from db import audit_sql, partitions, prune_sql, session
from db.session import snapshot
from service.bootstrap import Container, build
from service.config import Settings
from service.domain.commands import Commit, Release, Source
from service.domain.errors import InvalidArgument, NotFound
from service.domain.values import OrderState, Sku
from service.invariants import check
from service.pruner import Pruner, RoundReport, pruner_database
from service.queries import StockQueries
from tests.integration.test_engine import put_stock, reserve

pytestmark = pytest.mark.stack


@pytest.fixture
async def pruner_conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await session.connect(pruner_database(settings))
    try:
        assert await prune_sql.try_lock(conn, prune_sql.advisory_key(settings.app_id))
        yield conn
    finally:
        await conn.close()


async def prune(settings: Settings, conn: asyncpg.Connection) -> RoundReport:
    return await Pruner(settings.model_copy(update={"prune_pause_ms": 0})).prune_round(conn)


async def values(container: Container, sql: str, **params: Any) -> list[Any]:
    async with container.db.connect() as conn:
        return list((await conn.execute(text(sql), params)).scalars())


async def rows_of(container: Container, sql: str, **params: Any) -> list[Any]:
    async with container.db.connect() as conn:
        return list(await conn.execute(text(sql), params))


async def age(container: Container, sql: str, **params: Any) -> None:
    async with container.db.begin() as conn:
        await conn.execute(text(sql), params)


async def place(container: Container, order: str, quantity: int = 1) -> None:
    """An order from the stream: created (event ``<order>-created``)."""
    await container.engine.reserve(
        reserve(container, order, ("p", quantity), source=Source.STREAM, event=f"{order}-created")
    )


async def test_finished_orders_past_retention_go_with_their_lines_and_history(
    container: Container, settings: Settings, pruner_conn: asyncpg.Connection
) -> None:
    await put_stock(container, "p", 100)
    for order in ("paid", "cancelled", "open", "owing"):
        await place(container, order)
    await container.engine.commit(Commit("paid", Source.STREAM, event_id="paid-paid"))
    await container.engine.release(Release("cancelled", source=Source.STREAM, event_id="c-c"))
    await container.engine.commit(Commit("owing", Source.STREAM, event_id="owing-paid"))
    # "owing" still owes a backordered unit (as if committed beyond stock, not filled yet)
    await age(container, "UPDATE reservations SET backordered = 1 WHERE order_id = 'owing'")
    await age(container, "UPDATE stocks SET backordered = 1 WHERE product_id = 'p'")
    await age(container, "UPDATE orders SET updated_at = now() - interval '31 days'")
    await age(container, "UPDATE processed_events SET processed_at = now() - interval '8 days'")

    report = await prune(settings, pruner_conn)

    assert report.failed == []
    assert report.pruned["orders"] == 2 and report.pruned["reservations"] == 2
    assert report.pruned["order_history"] >= 4
    assert sorted(await values(container, "SELECT order_id FROM orders")) == ["open", "owing"]
    kept_lines = "SELECT DISTINCT order_id FROM reservations ORDER BY 1"
    assert await values(container, kept_lines) == ["open", "owing"]
    kept_history = "SELECT DISTINCT order_id FROM order_history ORDER BY 1"
    assert await values(container, kept_history) == ["open", "owing"]
    tombstones = "SELECT order_id || ':' || final_state FROM order_tombstones ORDER BY 1"
    assert await values(container, tombstones) == ["cancelled:RELEASED", "paid:COMMITTED"]
    # the dedup rows of the open and the owing orders stay; the others' went (8 days > 7)
    dedup = "SELECT DISTINCT order_id FROM processed_events ORDER BY 1"
    assert await values(container, dedup) == ["open", "owing"]
    assert await check(container.db) == []


async def test_a_redelivered_event_never_doubles_an_effect_in_any_of_the_three_regions(
    container: Container, settings: Settings, pruner_conn: asyncpg.Connection
) -> None:
    await put_stock(container, "p", 10)
    await place(container, "x", 3)
    await container.engine.commit(Commit("x", Source.STREAM, event_id="x-paid"))
    levels = "SELECT available || '/' || reserved || '/' || total FROM stocks"
    after_commit = await values(container, levels)
    assert after_commit == ["7/0/7"]
    lines = "SELECT count(*) FROM reservations"

    async def redeliver() -> list[Any]:
        created = reserve(container, "x", ("p", 3), source=Source.STREAM, event="x-created")
        return [
            await container.engine.reserve(created),
            await container.engine.commit(Commit("x", Source.STREAM, event_id="x-paid")),
        ]

    # 1. inside the dedup window: the claimed event ids make them duplicates
    assert all(result.duplicate for result in await redeliver())
    assert await values(container, levels) == after_commit and await values(container, lines) == [1]

    # 2. the dedup rows pruned, the order kept: the ledger absorbs them by state
    await age(container, "UPDATE processed_events SET processed_at = now() - interval '8 days'")
    report = await prune(settings, pruner_conn)
    assert report.pruned["processed_events"] == 2 and report.pruned["orders"] == 0
    for result in await redeliver():
        assert result.duplicate and result.state is OrderState.COMMITTED
    assert await values(container, levels) == after_commit and await values(container, lines) == [1]

    # 3. the order pruned: its tombstone answers as a COMMITTED order that holds nothing
    await age(container, "UPDATE orders SET updated_at = now() - interval '31 days'")
    await age(container, "UPDATE processed_events SET processed_at = now() - interval '8 days'")
    report = await prune(settings, pruner_conn)
    assert report.pruned["orders"] == 1
    for result in await redeliver():
        assert result.duplicate and result.state is OrderState.COMMITTED
    cancelled = await container.engine.release(
        Release("x", source=Source.STREAM, event_id="x-cancelled")
    )
    assert cancelled.state is OrderState.COMMITTED and not cancelled.reservations
    assert await values(container, levels) == after_commit
    assert await values(container, lines) == [0]
    assert await values(container, "SELECT count(*) FROM orders") == [0]
    with pytest.raises(NotFound, match="was pruned"):
        await container.orders.get_order("x")
    # `inventory audit` counts it as its final state, not as a lost order
    assert await audit_sql.order_states(container.db, ["x", "y"]) == {"x": "COMMITTED"}
    assert await check(container.db) == []

    # the tombstone goes after its own retention
    await age(container, "UPDATE order_tombstones SET pruned_at = now() - interval '181 days'")
    await age(container, "UPDATE processed_events SET processed_at = now() - interval '8 days'")
    report = await prune(settings, pruner_conn)
    assert report.pruned["order_tombstones"] == 1


async def test_partitions_are_created_ahead_and_dropped_by_age(
    container: Container, settings: Settings, pruner_conn: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    this_month = partitions.month_start(now)
    old_month = partitions.month_start(this_month - timedelta(days=400))
    await partitions.ensure_ahead(pruner_conn, old_month, 0)
    await put_stock(container, "p", 5)  # one movement now
    stock_id = (await values(container, "SELECT id FROM stocks"))[0]
    insert = (
        "INSERT INTO stock_movements (stock_id, product_id, warehouse_id, operation, quantity, "
        "available_after, reserved_after, total_after, actor, created_at) "
        "VALUES (:s, 'p', 'default', 'SET', 5, 5, 0, 5, 'test', :at)"
    )
    await age(container, insert, s=stock_id, at=old_month + timedelta(days=3))
    await age(container, insert, s=stock_id, at=now - timedelta(seconds=50))
    await age(container, insert, s=stock_id, at=now - timedelta(seconds=40))
    await put_stock(container, "p", 6)  # the newest movement: 5 -> 6
    # a stock changed only in that old month: its last movement is carried to the next months
    await put_stock(container, "quiet", 9)
    await age(
        container,
        "UPDATE stock_movements SET created_at = :at WHERE product_id = 'quiet'",
        at=old_month + timedelta(days=4),
    )

    retained = settings.model_copy(update={"movement_retention": timedelta(seconds=30)})
    report = await prune(retained, pruner_conn)

    months = await partitions.existing_months(pruner_conn)
    assert report.partitions_dropped[0] == partitions.partition_name(old_month)
    assert months[0] == this_month  # every month before this one dropped
    carried = "SELECT created_at, available_after FROM stock_movements WHERE product_id = 'quiet'"
    assert [tuple(r) for r in await rows_of(container, carried)] == [(this_month, 9)]
    ahead = [this_month]
    for _ in range(settings.movement_partitions_ahead):
        ahead.append(partitions.next_month(ahead[-1]))
    assert set(ahead) <= set(months)
    # of the rows older than the retention, only the stock's last one before it is left: the
    # levels at any instant after the horizon
    assert report.pruned["stock_movements"] >= 1
    older = (
        "SELECT created_at FROM stock_movements WHERE created_at < now() - interval '30s' "
        "AND product_id = 'p'"
    )
    assert await values(container, older) == [now - timedelta(seconds=40)]
    # the replay holds from the oldest retained movement (its figures are taken as given)
    assert await check(container.db, whole_history=False) == []
    # GetStock as_of: after the horizon answered from what is kept, before it refused
    reads = StockQueries(container.db)
    reads.movement_retention = retained.movement_retention
    sku = Sku("p")
    then = await reads.get_stock_as_of(sku, None, datetime.now(UTC) - timedelta(seconds=20))
    assert then.available == 5
    with pytest.raises(InvalidArgument, match="movement retention"):
        await reads.get_stock_as_of(sku, None, now - timedelta(seconds=45))


async def test_every_writing_process_creates_the_partitions_ahead(settings: Settings) -> None:
    later = partitions.next_month(partitions.month_start(datetime.now(UTC)))
    for _ in range(settings.movement_partitions_ahead):
        later = partitions.next_month(later)
    conn = await session.connect(settings.database("test"))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(later)}")
        assert later not in await partitions.existing_months(conn)
        wider = settings.model_copy(
            update={"movement_partitions_ahead": settings.movement_partitions_ahead + 1}
        )
        async with build(wider):
            assert later in await partitions.existing_months(conn)
    finally:
        await conn.close()


CHURNED_OPTIONS = "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"


async def test_a_vacuum_after_pruning_keeps_the_tables_size_and_takes_no_exclusive_lock(
    container: Container, pruner_conn: asyncpg.Connection
) -> None:
    """Revision 0007: VACUUM leaves a churned table's end in place (giving it back would take
    an ACCESS EXCLUSIVE lock and the pages are written again at once), and the movement
    partitions created from now on carry the same storage parameters."""
    far = partitions.next_month(partitions.month_start(datetime.now(UTC)) + timedelta(days=900))
    created = await partitions.ensure_ahead(pruner_conn, far, 0)
    names = [t for t in prune_sql.TABLES if t != partitions.PARENT] + created
    options = dict(tuple(r) for r in await rows_of(container, CHURNED_OPTIONS, names=names))
    for name in names:
        assert "vacuum_truncate=false" in (options[name] or []), name
        assert "autovacuum_vacuum_scale_factor=0.05" in (options[name] or []), name
    await pruner_conn.execute(f"DROP TABLE {created[0]}")

    await age(
        container,
        "INSERT INTO order_tombstones (order_id, final_state) "
        "SELECT 'gone-' || g, 'COMMITTED' FROM generate_series(1, 20000) g",
    )
    size = "SELECT pg_relation_size('order_tombstones')"
    before = (await values(container, size))[0]
    await pruner_conn.execute("DELETE FROM order_tombstones")
    await pruner_conn.execute("SELECT pg_stat_force_next_flush()")  # the dead rows counted now
    assert "order_tombstones" in await prune_sql.vacuum_churned(pruner_conn)
    assert (await values(container, size))[0] == before > 0


async def test_an_audit_snapshot_keeps_an_order_with_its_lines_while_the_pruner_runs(
    container: Container, settings: Settings, pruner_conn: asyncpg.Connection
) -> None:
    """The chaos audit reads orders, tombstones and lines in one snapshot: a prune that commits
    between two of its reads stays out of the later ones (read in separate snapshots, `make
    bench`'s load audit once saw nine COMMITTED orders "holding nothing")."""
    await put_stock(container, "p", 10)
    await place(container, "paid", 2)
    await container.engine.commit(Commit("paid", Source.STREAM, event_id="paid-paid"))
    await age(container, "UPDATE orders SET updated_at = now() - interval '31 days'")

    async with snapshot(container.db) as conn:
        orders = (await conn.execute(text("SELECT order_id, state FROM orders"))).all()
        assert (await prune(settings, pruner_conn)).pruned["orders"] == 1
        tombstones = (await conn.execute(text("SELECT order_id FROM order_tombstones"))).all()
        lines = (await conn.execute(text("SELECT order_id, status FROM reservations"))).all()

    assert [tuple(row) for row in orders] == [("paid", "COMMITTED")]
    assert tombstones == []
    assert [tuple(row) for row in lines] == [("paid", "COMMITTED")]
    assert await values(container, "SELECT order_id FROM order_tombstones") == ["paid"]
