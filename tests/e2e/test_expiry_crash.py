"""kill -9 the worker with 1,000 reservations pending, restart it: every one of them expires.

The worker process (``inventory serve --role worker``) schedules 1,000 reservations in its
timer table; once the table's changelog holds all of them it is killed with SIGKILL, and a
new process takes over. The sweeper's first round is an hour away, so every expiry after the
restart comes from the schedule the new process recovered from the changelog (Faust table
recovery on Tansu, which docs/pitfalls.md (faust-streaming) warns can hang near the end of a
changelog).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from service.bootstrap import build
from service.config import Settings
from service.devtools.observe import TopicCollector
from service.domain.commands import UpdateStock
from service.domain.values import Sku, StockOperation
from service.invariants import check
from streams.app import ensure_topics
from streams.expiry.agent import TABLE_NAME
from tests.e2e.worker_process import at_least, at_most, count, start_worker, still_running, stop
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

ORDERS = 1_000
SKUS = 10
TTL_S = 25  # long enough that nothing falls due before the kill
REBUILT = re.compile(rb"expiry schedule rebuilt: (\d+) entries")


def crash_settings(overrides: dict[str, Any]) -> Settings:
    return Settings(**overrides).isolated(
        uuid.uuid4().hex[:8],
        topic_partitions=4,
        broker_commit_interval_s=0.5,
        expiry_tick_ms=100,
        expiry_sweep_interval_s=3600,
        http_port=0,
        cache_enabled=False,
    )


def scheduled_keys(changelog: TopicCollector, topic: str) -> set[bytes]:
    """Keys whose latest changelog record is a value (not a tombstone)."""
    latest: dict[bytes, bytes | None] = {}
    for record in changelog.records.get(topic, []):
        latest[(record.key or "").encode()] = record.raw
    return {key for key, value in latest.items() if value is not None}


async def publish_orders(settings: Settings, prefix: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    orders = [f"{prefix}-{i}" for i in range(ORDERS)]
    try:
        sent = []
        for i, order in enumerate(orders):
            body = {
                "event_id": f"{order}-created",
                "order_id": order,
                "items": [{"product_id": f"{prefix}-sku-{i % SKUS}", "quantity": 1}],
                "ttl_seconds": TTL_S,
                "occurred_at": "2024-05-01T12:00:00Z",
            }
            sent.append(
                await producer.send(
                    settings.topic_order_created, json.dumps(body).encode(), key=order.encode()
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return orders


@pytest.mark.timeout(240)
async def test_kill_9_with_pending_reservations_loses_no_expiry(
    stack: Any, migrated: Any, db_engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = crash_settings(stack.overrides)
    await ensure_topics(settings)
    prefix = f"EXP{uuid.uuid4().hex[:6]}"
    async with build(settings) as container:
        for i in range(SKUS):
            await container.engine.update_stock(
                UpdateStock(Sku(f"{prefix}-sku-{i}"), "default", StockOperation.SET, 1_000, "seed")
            )
    orders = await publish_orders(settings, prefix)

    changelog_topic = f"{settings.app_id}-{TABLE_NAME}-changelog"
    log_path = tmp_path / "worker.log"
    first = start_worker(settings, log_path)
    changelog: TopicCollector | None = None
    try:
        reserved = "SELECT count(*) FROM orders WHERE state = 'RESERVED'"
        await wait_for(
            lambda: at_least(db_engine, reserved, ORDERS),
            within_s=90,
            what="1,000 reservations",
            alive=[still_running(first)],
        )
        changelog = TopicCollector(settings.kafka_bootstrap, [changelog_topic], decode=False)
        await changelog.start()
        await changelog.wait_for(
            lambda: len(scheduled_keys(changelog, changelog_topic)) >= ORDERS,
            within_s=60,
            what="the schedule's changelog to hold every reservation",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        if changelog is not None:
            await changelog.stop()
    killed_at = time.time()
    assert await count(db_engine, "SELECT count(*) FROM orders WHERE state = 'RESERVED'") == ORDERS
    first_log_end = log_path.stat().st_size

    second = start_worker(settings, log_path)
    try:
        expired = "SELECT count(*) FROM orders WHERE state = 'EXPIRED'"
        await wait_for(
            lambda: at_least(db_engine, expired, ORDERS),
            within_s=150,
            what="every expiry",
            alive=[still_running(second)],
        )
        done_at = time.time()
        await wait_for(
            lambda: at_most(db_engine, "SELECT count(*) FROM outbox WHERE published_at IS NULL", 0),
            within_s=60,
            what="the outbox drained",
            alive=[still_running(second)],
        )
    finally:
        stop(second)

    second_log = log_path.read_bytes()[first_log_end:]
    restored = sum(int(n) for n in REBUILT.findall(second_log))
    assert restored >= ORDERS, f"the restarted worker restored {restored} entries; log {log_path}"
    assert await count(db_engine, "SELECT count(*) FROM orders WHERE state <> 'EXPIRED'") == 0
    assert await count(db_engine, "SELECT coalesce(sum(reserved), 0) FROM stocks") == 0
    assert await check(db_engine) == []

    out = TopicCollector(settings.kafka_bootstrap, [settings.topic_reservations])
    await out.start()
    try:
        await out.wait_caught_up()
    finally:
        await out.stop()
    expired_events = {
        r.value["order_id"]
        for r in out.records[settings.topic_reservations]
        if r.value["status"] == "EXPIRED"
    }
    assert expired_events == set(orders)
    print(
        f"restored {restored} schedule entries after kill -9; all {ORDERS} expired "
        f"{done_at - killed_at:.1f}s after the kill (TTL {TTL_S}s); log: {log_path}"
    )
