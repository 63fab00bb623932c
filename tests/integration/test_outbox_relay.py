"""The outbox relay against the real PostgreSQL and broker of the test stack."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.devtools.observe import TopicCollector
from service.pruner import Pruner
from streams.app import ensure_topics
from streams.outbox import OutboxRelay
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture
async def relay_settings(settings: Settings) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    relay = settings.model_copy(
        update={
            "app_id": f"inventory-relay-{suffix}",
            "topic_stock_changed": f"stock-changed-{suffix}",
            "topic_reservations": f"inventory-reservations-{suffix}",
            "topic_partitions": 3,
            "outbox_batch_size": 7,  # several rounds, several batches per round
            "outbox_poll_interval_ms": 5.0,
        }
    )
    await ensure_topics(relay, (relay.topic_stock_changed, relay.topic_reservations))
    return relay


@pytest.fixture
async def collector(relay_settings: Settings) -> AsyncIterator[TopicCollector]:
    out = TopicCollector(
        relay_settings.kafka_bootstrap,
        [relay_settings.topic_stock_changed, relay_settings.topic_reservations],
    )
    await out.start()
    yield out
    await out.stop()


async def insert(db: AsyncEngine, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO outbox (topic, key, payload) VALUES (:t, :k, CAST(:p AS jsonb))"),
            [{"t": t, "k": k, "p": json.dumps(p)} for t, k, p in rows],
        )


async def unpublished(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
            ).scalar_one()
        )


def changes(settings: Settings, n: int, keys: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (settings.topic_stock_changed, f"sku-{i % keys}", {"sku": f"sku-{i % keys}", "seq": i})
        for i in range(n)
    ]


async def test_rows_are_published_in_order_per_key_and_marked(
    relay_settings: Settings, db_engine: AsyncEngine, collector: TopicCollector
) -> None:
    await insert(db_engine, changes(relay_settings, 60, keys=5))
    await insert(
        db_engine, [(relay_settings.topic_reservations, "order-1", {"order_id": "order-1"})]
    )
    relay = OutboxRelay(relay_settings)
    await relay.start()
    try:
        await collector.wait_for(lambda: collector.count >= 61, what="61 records")
        assert await unpublished(db_engine) == 0
    finally:
        await relay.stop()
    records = collector.records[relay_settings.topic_stock_changed]
    assert len(records) == 60
    for key in {r.key for r in records}:
        seqs = [r.value["seq"] for r in records if r.key == key]
        assert seqs == sorted(seqs)
        assert len({r.partition for r in records if r.key == key}) == 1
    reservation = collector.records[relay_settings.topic_reservations][0]
    assert (reservation.key, reservation.value) == ("order-1", {"order_id": "order-1"})


async def test_one_relay_publishes_and_a_standby_takes_over(
    relay_settings: Settings, db_engine: AsyncEngine, collector: TopicCollector
) -> None:
    first = OutboxRelay(relay_settings, standby_retry_s=0.1)
    second = OutboxRelay(relay_settings, standby_retry_s=0.1)
    await first.start()
    await insert(db_engine, changes(relay_settings, 10, keys=2))
    await collector.wait_for(lambda: collector.count >= 10, what="first records")
    await second.start()
    await asyncio.sleep(0.5)  # a few standby rounds
    assert first.is_leader and not second.is_leader
    await first.stop()
    await insert(db_engine, changes(relay_settings, 10, keys=2))
    try:
        await collector.wait_for(lambda: collector.count >= 20, what="records after takeover")
        assert second.is_leader
        assert first.published + second.published == 20
    finally:
        await second.stop()


async def test_a_lost_connection_stops_publishing_until_the_lock_is_back(
    relay_settings: Settings, db_engine: AsyncEngine, collector: TopicCollector
) -> None:
    relay = OutboxRelay(relay_settings, standby_retry_s=0.1)
    await relay.start()
    try:
        await insert(db_engine, changes(relay_settings, 5, keys=1))
        await collector.wait_for(lambda: collector.count >= 5, what="first records")
        async with db_engine.begin() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": f"{relay_settings.app_id}-outbox-relay"},
                )
            ).scalar_one()
        assert killed == 1
        await insert(db_engine, changes(relay_settings, 5, keys=1))
        await collector.wait_for(lambda: collector.count >= 10, what="records after reconnect")
        assert await unpublished(db_engine) == 0
    finally:
        await relay.stop()


async def test_published_rows_past_retention_are_pruned(
    relay_settings: Settings, db_engine: AsyncEngine, collector: TopicCollector
) -> None:
    short = relay_settings.model_copy(
        update={"outbox_retention_hours": 0.5 / 3600, "prune_interval_s": 0.2}
    )
    await insert(db_engine, changes(short, 5, keys=1))
    relay = OutboxRelay(short)
    pruner = Pruner(short)  # the pruner deletes published rows, with the other retentions
    await relay.start()
    await pruner.start()
    try:
        await collector.wait_for(lambda: collector.count >= 5, what="records")

        async def pruned() -> bool:
            async with db_engine.connect() as conn:
                left = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
            return left == 0

        await wait_for(pruned, within_s=10, what="the published rows pruned", every_s=0.1)
    finally:
        await pruner.stop()
        await relay.stop()


async def test_a_commit_in_another_process_wakes_the_relay(
    relay_settings: Settings, settings: Settings, container: Any, db_engine: AsyncEngine
) -> None:
    """The engine's commit notifies the relay through PostgreSQL: with a poll interval of an
    hour, only that wake-up can publish the change (an API process has no relay)."""
    from service.domain.commands import UpdateStock
    from service.domain.values import Sku, StockOperation

    sleepy = relay_settings.model_copy(update={"outbox_poll_interval_ms": 3_600_000.0})
    await ensure_topics(settings, (settings.topic_stock_changed,))
    out = TopicCollector(
        sleepy.kafka_bootstrap, [sleepy.topic_stock_changed, settings.topic_stock_changed]
    )
    await out.start()
    relay = OutboxRelay(sleepy)
    try:
        await insert(db_engine, changes(sleepy, 1, keys=1))
        await relay.start()  # publishes that row in its first round, then sleeps for the hour
        await out.wait_for(lambda: out.records.get(sleepy.topic_stock_changed), what="first")
        await container.engine.update_stock(
            UpdateStock(Sku("wake-1"), "default", StockOperation.SET, 3, "notify")
        )
        published = await out.wait_for(
            lambda: out.records.get(settings.topic_stock_changed), what="the engine's change"
        )
        assert published[0].value["product_id"] == "wake-1"
    finally:
        await relay.stop()
        await out.stop()
