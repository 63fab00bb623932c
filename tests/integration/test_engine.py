"""The reservation engine against the real PostgreSQL of the test stack."""

import asyncio
import contextlib
import random

import pytest
from sqlalchemy import text

from service.bootstrap import build
from service.domain import validation as v
from service.domain.commands import Commit, Release, Source
from service.domain.errors import (
    AlreadyExists,
    InsufficientStock,
    InvalidArgument,
    NotFound,
    Unavailable,
    VersionMismatch,
    WrongState,
)
from service.domain.values import OrderState
from service.engine import InternalError
from service.invariants import check

pytestmark = pytest.mark.stack


async def add_warehouses(db, *rows):
    async with db.begin() as conn:
        for wid, priority in rows:
            await conn.execute(
                text(
                    "INSERT INTO warehouses (id, name, priority, active) VALUES (:i, :i, :p, true)"
                ),
                {"i": wid, "p": priority},
            )


async def put_stock(container, product, quantity, warehouse="default", variant=None):
    return await container.engine.update_stock(
        v.update_stock(
            product_id=product,
            variant_id=variant,
            warehouse_id=warehouse,
            operation="SET",
            quantity=quantity,
            reason="test stock",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


def reserve(container, order, *items, source=Source.API, event=None, ttl=None):
    raw = [{"product_id": p, "quantity": q} for p, q in items]
    return v.reserve(order, raw, ttl, container.limits, source=source, event_id=event)


async def scalar(db, sql, **params):
    async with db.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def test_hot_skus_are_never_oversold(container):
    stock = {"hot-a": 40, "hot-b": 30, "hot-c": 20}
    for product, quantity in stock.items():
        await put_stock(container, product, quantity)
    rng = random.Random(7)
    demand = []
    for i in range(64):  # 64 concurrent reservers, total demand about twice the stock
        a, b = rng.sample(sorted(stock), 2)
        demand.append(reserve(container, f"order-{i}", (a, rng.randint(1, 2)), (b, 1)))

    async def attempt(command):
        try:
            return await container.engine.reserve(command)
        except InsufficientStock:
            return None

    results = await asyncio.gather(*(attempt(c) for c in demand))
    reserved = [r for r in results if r is not None]
    assert 0 < len(reserved) < 64
    for product, quantity in stock.items():
        view = await container.queries.get_stock(v.sku(product, None, container.limits), None)
        taken = sum(
            line.quantity
            for r in reserved
            for line in r.reservations
            if line.sku.product_id == product
        )
        assert view.reserved == taken <= quantity
        assert view.available == quantity - taken
    assert await check(container.db) == []


async def test_group_commit_batches_concurrent_callers(container):
    await put_stock(container, "batched", 1000)
    before = await scalar(container.db, "SELECT count(*) FROM outbox")
    await asyncio.gather(
        *(container.engine.reserve(reserve(container, f"b-{i}", ("batched", 1))) for i in range(50))
    )
    # 50 orders, but one stock-changed row per stock per batch: fewer than 50 means batching
    changes = await scalar(
        container.db, "SELECT count(*) FROM outbox WHERE topic = 'stock-changed'"
    )
    assert changes - before < 50
    assert (
        await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id='batched'") == 50
    )


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_what_arrives_while_a_batch_writes_is_one_batch_when_it_commits(
    settings, db_engine, monkeypatch, in_flight
):
    # The next batch forms when the one before has finished (one in flight) or sends its
    # COMMIT (two), from everything queued by then; a second batch formed at once would have
    # held the first ten alone.
    import service.engine

    real_plan = service.engine.plan_batch
    batch_sizes = []

    def plan_spied(snapshot, commands, **kwargs):
        batch_sizes.append(len(commands))
        return real_plan(snapshot, commands, **kwargs)

    monkeypatch.setattr(service.engine, "plan_batch", plan_spied)
    async with build(settings.model_copy(update={"batches_in_flight": in_flight})) as container:
        await put_stock(container, "held", 10)
        await put_stock(container, "free", 100)
        batch_sizes.clear()
        engine = container.engine

        def reserving(order, product):
            return asyncio.create_task(engine.reserve(reserve(container, order, (product, 1))))

        async with db_engine.begin() as holder:
            await holder.execute(text("SELECT 1 FROM stocks WHERE product_id = 'held' FOR UPDATE"))
            first = reserving("first", "held")  # its batch waits for the row
            await asyncio.sleep(0.2)
            early = [reserving(f"early-{i}", "free") for i in range(10)]
            await asyncio.sleep(0.2)
            late = [reserving(f"late-{i}", "free") for i in range(10)]
            await asyncio.sleep(0.05)
        results = await asyncio.gather(first, *early, *late)
    assert {r.state for r in results} == {OrderState.RESERVED}
    assert batch_sizes == [1, 20]


@pytest.mark.parametrize(
    ("source", "begins_while_it_commits"), [(Source.STREAM, True), (Source.API, False)]
)
async def test_only_a_batch_of_events_lets_the_next_begin_while_it_commits(
    settings, monkeypatch, source, begins_while_it_commits
):
    # With two batches in flight (the default), a batch of events lets the next one form when
    # it sends its COMMIT; a batch with an RPC's caller runs alone, and the next one forms from
    # everything queued when it has finished. The first batch's COMMIT waits (up to a second)
    # for the second batch to be planned: only the first case gets there.
    import asyncpg

    import service.engine

    first_id, second_id = f"overlapped-{source.name}-1", f"overlapped-{source.name}-2"
    steps: list[str] = []
    second_planned = asyncio.Event()
    at_commit = asyncio.Event()
    real_plan = service.engine.plan_batch
    real_execute = asyncpg.Connection.execute

    def plan_spied(snapshot, commands, **kwargs):
        order_id = commands[0].order_id
        if order_id == first_id:
            steps.append("first planned")
        if order_id == second_id:
            steps.append("second planned")
            second_planned.set()
        return real_plan(snapshot, commands, **kwargs)

    async def execute_spied(self, query, *args, **kwargs):
        if query != "COMMIT" or steps != ["first planned"]:
            return await real_execute(self, query, *args, **kwargs)
        steps.append("first committing")
        at_commit.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(second_planned.wait(), timeout=1)
        result = await real_execute(self, query, *args, **kwargs)
        steps.append("first committed")
        return result

    async with build(settings.model_copy(update={"batches_in_flight": 2})) as container:
        # two SKUs: the second batch does not wait for the first one's stock rows
        await put_stock(container, first_id, 10)
        await put_stock(container, second_id, 10)
        monkeypatch.setattr(service.engine, "plan_batch", plan_spied)
        monkeypatch.setattr(asyncpg.Connection, "execute", execute_spied)
        engine = container.engine

        def command(order_id):
            event = f"{order_id}-event" if source is Source.STREAM else None
            return reserve(container, order_id, (order_id, 1), source=source, event=event)

        first = asyncio.create_task(engine.execute_many([command(first_id)]))
        await asyncio.wait_for(at_commit.wait(), timeout=10)
        second = asyncio.create_task(engine.execute_many([command(second_id)]))
        results = [*await first, *await second]

    assert [r.state for r in results] == [OrderState.RESERVED] * 2
    if begins_while_it_commits:
        assert steps == ["first planned", "first committing", "second planned", "first committed"]
    else:
        assert steps == ["first planned", "first committing", "first committed", "second planned"]


async def test_same_order_twice_has_one_effect_and_other_items_are_refused(container):
    await put_stock(container, "p", 10)
    first = await container.engine.reserve(reserve(container, "o-1", ("p", 3)))
    again = await container.engine.reserve(reserve(container, "o-1", ("p", 3)))
    assert again.duplicate and again.reservations == first.reservations
    with pytest.raises(AlreadyExists):
        await container.engine.reserve(reserve(container, "o-1", ("p", 4)))
    assert await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id='p'") == 3


async def test_same_event_redelivered_and_order_recreated_under_new_event(container):
    await put_stock(container, "p", 10)
    created = reserve(container, "o-2", ("p", 2), source=Source.STREAM, event="ev-1")
    renamed = reserve(container, "o-2", ("p", 2), source=Source.STREAM, event="ev-2")
    results = await container.engine.execute_many([created, created, renamed])
    assert results[0].state is OrderState.RESERVED
    assert results[1].duplicate and results[2].duplicate
    assert (await container.engine.execute_many([created]))[0].duplicate
    assert await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id='p'") == 2


async def test_commit_release_and_their_repeats(container):
    await put_stock(container, "p", 10)
    limits = container.limits
    await container.engine.reserve(reserve(container, "c", ("p", 4)))
    await container.engine.reserve(reserve(container, "r", ("p", 3)))
    assert (await container.engine.commit(v.commit("c", limits))).state is OrderState.COMMITTED
    assert (await container.engine.commit(v.commit("c", limits))).duplicate
    assert (
        await container.engine.release(v.release("r", "x", limits))
    ).state is OrderState.RELEASED
    assert (await container.engine.release(v.release("r", "x", limits))).duplicate
    with pytest.raises(WrongState):
        await container.engine.release(v.release("c", None, limits))
    with pytest.raises(WrongState):
        await container.engine.commit(v.commit("r", limits))
    with pytest.raises(NotFound):
        await container.engine.commit(v.commit("nobody", limits))
    view = await container.queries.get_stock(v.sku("p", None, limits), None)
    assert (view.available, view.reserved, view.total) == (6, 0, 6)
    assert await check(container.db) == []


async def test_expire_then_commit_reserves_again_or_fails(container):
    await put_stock(container, "p", 5)
    await container.engine.reserve(reserve(container, "e1", ("p", 3), ttl=1))
    await container.engine.reserve(reserve(container, "e2", ("p", 2), ttl=1))
    await asyncio.sleep(1.1)
    expired = await container.engine.expire(["e1", "e2", "unknown"])
    assert [r.state for r in expired[:2]] == [OrderState.EXPIRED, OrderState.EXPIRED]
    assert await scalar(container.db, "SELECT available FROM stocks WHERE product_id='p'") == 5
    # e1 pays after expiry with stock still there: reserved and committed in one step
    paid = await container.engine.commit(v.commit("e1", container.limits))
    assert paid.state is OrderState.COMMITTED
    # now only 2 are left; someone takes them, so e2's late payment finds nothing
    await container.engine.reserve(reserve(container, "thief", ("p", 2)))
    with pytest.raises(InsufficientStock):
        await container.engine.commit(v.commit("e2", container.limits))
    streamed = await container.engine.execute_many([Commit("e2", Source.STREAM, "late-pay")])
    assert streamed[0].state is OrderState.COMMIT_FAILED
    assert await check(container.db) == []


async def test_expire_does_nothing_before_the_deadline(container):
    await put_stock(container, "p", 5)
    await container.engine.reserve(reserve(container, "early", ("p", 1), ttl=600))
    [result] = await container.engine.expire(["early"])
    assert result.state is OrderState.RESERVED and result.duplicate


async def test_out_of_order_stream_events(container):
    await put_stock(container, "p", 10)
    cancel_first = Release("x1", "gone", Source.STREAM, "c-1")
    paid_first = Commit("x2", Source.STREAM, "p-2")
    results = await container.engine.execute_many(
        [
            cancel_first,
            paid_first,
            reserve(container, "x1", ("p", 2), source=Source.STREAM, event="cr-1"),
            reserve(container, "x2", ("p", 3), source=Source.STREAM, event="cr-2"),
        ]
    )
    assert [r.state for r in results] == [
        OrderState.CANCELLED_EARLY,
        OrderState.PAID_EARLY,
        OrderState.RELEASED,
        OrderState.COMMITTED,
    ]
    view = await container.queries.get_stock(v.sku("p", None, container.limits), None)
    assert (view.available, view.reserved, view.total) == (7, 0, 7)
    statuses = await scalar(
        container.db,
        "SELECT string_agg(payload->>'status', ',' ORDER BY id) FROM outbox "
        "WHERE topic = 'inventory-reservations'",
    )
    assert statuses == "RELEASED,COMMITTED"


async def test_batches_locking_the_same_skus_in_opposite_orders_never_deadlock(settings):
    async with build(settings) as one, build(settings) as two:
        for product in ("left", "right"):
            await put_stock(one, product, 10_000)

        async def storm(container, prefix, first, second):
            for round_ in range(10):
                commands = [
                    reserve(container, f"{prefix}-{round_}-{i}", (first, 1), (second, 1))
                    for i in range(20)
                ]
                await asyncio.gather(*(container.engine.reserve(c) for c in commands))

        await asyncio.gather(storm(one, "lr", "left", "right"), storm(two, "rl", "right", "left"))
        reserved = await scalar(one.db, "SELECT sum(reserved) FROM stocks")
        assert reserved == 2 * 2 * 10 * 20
        assert await check(one.db) == []


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([{"product_id": "p", "quantity": 0}], InvalidArgument),
        ([{"product_id": "p", "quantity": -3}], InvalidArgument),
        ([{"product_id": "p", "quantity": 10**9}], InvalidArgument),
        ([{"product_id": "p", "quantity": 2.5}], InvalidArgument),
        ([{"product_id": "", "quantity": 1}], InvalidArgument),
        ([{"product_id": "p", "quantity": 1}] * 1000, InvalidArgument),
        ([{"product_id": "p", "quantity": 1, "warehouse_id": "atlantis"}], NotFound),
        ([{"product_id": "unknown", "quantity": 1}], NotFound),
        ([{"product_id": "p", "quantity": 1}, {"product_id": "unknown", "quantity": 1}], NotFound),
    ],
)
async def test_bad_input_is_refused_precisely_and_changes_nothing(container, items, error):
    await put_stock(container, "p", 10)
    before = await scalar(container.db, "SELECT count(*) FROM stock_movements")
    with pytest.raises(error):
        await container.engine.reserve(v.reserve("bad", items, None, container.limits))
    assert await scalar(container.db, "SELECT count(*) FROM orders") == 0
    assert await scalar(container.db, "SELECT count(*) FROM stock_movements") == before
    assert await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id='p'") == 0


async def test_update_stock_semantics_version_and_idempotency(container):
    await add_warehouses(container.db, ("east", 10))
    limits = container.limits

    def update(operation, quantity, **extra):
        return v.update_stock(
            product_id="u",
            variant_id="red",
            warehouse_id="east",
            operation=operation,
            quantity=quantity,
            reason="count",
            limits=limits,
            default_warehouse_id="default",
            **extra,
        )

    with pytest.raises(NotFound):
        await container.engine.update_stock(update("SUBTRACT", 1))
    level = await container.engine.update_stock(update("ADD", 10, idempotency_key="k1"))
    again = await container.engine.update_stock(update("ADD", 10, idempotency_key="k1"))
    assert (level.total, again.total, again.version) == (10, 10, level.version)
    await container.engine.reserve(
        v.reserve(
            "u-order", [{"product_id": "u", "variant_id": "red", "quantity": 4}], None, limits
        )
    )
    with pytest.raises(InsufficientStock.__mro__[1]):  # NegativeStock is a FailedPrecondition
        await container.engine.update_stock(update("SET", 3))
    with pytest.raises(VersionMismatch):
        await container.engine.update_stock(update("ADD", 1, expected_version=level.version))
    counted = await container.engine.update_stock(update("SET", 7))
    assert (counted.available, counted.reserved, counted.total) == (3, 4, 7)
    with pytest.raises(NotFound):
        await container.engine.update_stock(
            v.update_stock(
                product_id="u",
                variant_id=None,
                warehouse_id="atlantis",
                operation="ADD",
                quantity=1,
                reason="",
                limits=limits,
                default_warehouse_id="default",
            )
        )
    # every change has its movement, and failed updates left no stray rows
    assert await scalar(container.db, "SELECT count(*) FROM stocks WHERE product_id='u'") == 1
    assert (
        await scalar(container.db, "SELECT count(*) FROM stock_movements WHERE product_id='u'") == 3
    )
    assert await check(container.db) == []


async def test_allocation_splits_across_warehouses_by_priority(container):
    await add_warehouses(container.db, ("near", 1), ("far", 50))
    await put_stock(container, "s", 3, warehouse="near")
    await put_stock(container, "s", 10, warehouse="far")
    result = await container.engine.reserve(reserve(container, "split", ("s", 5)))
    assert sorted((line.warehouse_id, line.quantity) for line in result.reservations) == [
        ("far", 2),
        ("near", 3),
    ]
    pinned = await container.engine.reserve(
        v.reserve(
            "pin",
            [{"product_id": "s", "quantity": 1, "warehouse_id": "far"}],
            None,
            container.limits,
        )
    )
    assert [line.warehouse_id for line in pinned.reservations] == ["far"]


async def test_database_down_fails_the_batch_with_a_retryable_error(settings, unused_tcp_port):
    from service.domain.errors import Unavailable

    down = settings.model_copy(
        update={
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port}/x",
            "db_connect_timeout_s": 0.5,
        }
    )
    async with build(down) as container:
        with pytest.raises(Unavailable):
            await container.engine.reserve(reserve(container, "o", ("p", 1)))
        with pytest.raises(Unavailable):
            await container.engine.execute_many(
                [reserve(container, "o", ("p", 1), source=Source.STREAM, event="e")]
            )


async def test_a_command_the_engine_fails_on_unexpectedly_fails_alone(container, monkeypatch):
    # The one place a failing batch is split: the engine runs it again one command at a
    # time, so only the command that trips the bug comes back INTERNAL.
    import service.engine

    real_plan = service.engine.plan_batch

    batch_sizes = []

    def plan_with_a_bug(snapshot, commands, **kwargs):
        batch_sizes.append(len(commands))
        if any(getattr(c, "order_id", None) == "poison" for c in commands):
            raise RuntimeError("a bug in planning")
        return real_plan(snapshot, commands, **kwargs)

    monkeypatch.setattr(service.engine, "plan_batch", plan_with_a_bug)
    await put_stock(container, "iso", 10)
    commands = [reserve(container, order, ("iso", 1)) for order in ("a", "poison", "c")]
    batch_sizes.clear()
    results = await container.engine.execute_many(commands)
    assert batch_sizes == [3, 1, 1, 1]  # together first, then each alone
    assert [getattr(r, "status", None) for r in results] == [None, "INTERNAL", None]
    assert [r.state for r in (results[0], results[2])] == [OrderState.RESERVED] * 2
    assert await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id = 'iso'") == 2


async def test_a_batch_after_the_server_dropped_every_connection_runs_on_fresh_ones(
    settings, db_engine
):
    """The engine's batches run on the driver connection (db.session.driver_transaction):
    a connection the server closed is discarded with the rest of the pool, as SQLAlchemy
    does, and the batch runs again on a new one instead of failing."""
    settings = settings.model_copy(update={"app_id": "engine-dropped"})
    async with build(settings) as container:
        await put_stock(container, "dropped-sku", 10)
        # three connections idle in the pool
        db = container.db
        async with db.connect() as a, db.connect() as b, db.connect() as c:
            for conn in (a, b, c):
                await conn.execute(text("SELECT 1"))
        dropped = await scalar(
            db_engine,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :name",
            name="engine-dropped",
        )
        assert dropped >= 3
        results = await asyncio.gather(
            *(
                container.engine.reserve(reserve(container, f"dropped-{i}", ("dropped-sku", 1)))
                for i in range(3)
            )
        )
        assert [r.state for r in results] == [OrderState.RESERVED] * 3
        assert (
            await scalar(db_engine, "SELECT reserved FROM stocks WHERE product_id = 'dropped-sku'")
            == 3
        )


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_stop_finishes_every_queued_batch_then_refuses(settings, in_flight):
    update = {"batches_in_flight": in_flight, "batch_max_size": 8}
    sku = f"drained-{in_flight}"
    async with build(settings.model_copy(update=update)) as container:
        await put_stock(container, sku, 100)
        engine = container.engine
        calls = [
            asyncio.create_task(engine.reserve(reserve(container, f"{sku}-{i}", (sku, 1))))
            for i in range(30)
        ]
        await asyncio.sleep(0)  # every call is queued: four batches at most eight each
        await engine.stop()

        assert all(call.done() for call in calls)
        assert {call.result().state for call in calls} == {OrderState.RESERVED}
        with pytest.raises(Unavailable):
            await engine.reserve(reserve(container, f"after-{in_flight}", (sku, 1)))
        await engine.start()  # build's exit stops it again


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_a_bug_after_the_commit_fails_its_callers_and_the_engine_goes_on(
    settings, monkeypatch, in_flight
):
    # Past the transaction (counting outcomes, answering), a bug must not leave a caller
    # waiting forever, nor stop the batch loop.
    import service.engine

    real_count = service.engine.count_outcome

    def count_with_a_bug(command, result):
        if getattr(command, "order_id", "").startswith("counted-badly"):
            raise RuntimeError("a bug in counting")
        real_count(command, result)

    monkeypatch.setattr(service.engine, "count_outcome", count_with_a_bug)
    sku = f"after-bug-{in_flight}"
    async with build(settings.model_copy(update={"batches_in_flight": in_flight})) as container:
        await put_stock(container, sku, 10)
        with pytest.raises(InternalError):  # not a caller left waiting (the timeout)
            await asyncio.wait_for(
                container.engine.reserve(
                    reserve(container, f"counted-badly-{in_flight}", (sku, 1))
                ),
                timeout=10,
            )
        result = await container.engine.reserve(reserve(container, f"fine-{in_flight}", (sku, 1)))
        assert result.state is OrderState.RESERVED
        # the first order had committed before the bug: its unit is reserved (a retry of it is
        # answered from the ledger)
        assert (
            await scalar(container.db, "SELECT reserved FROM stocks WHERE product_id = :p", p=sku)
            == 2
        )
