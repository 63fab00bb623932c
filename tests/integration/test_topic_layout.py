"""The worker refuses topics whose partition counts break co-partitioning; loadgen never lets
the broker auto-create a topic with its own default count."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.config import Settings
from service.devtools.load_generator import LoadConfig, publish
from streams.app import check_topic_layout, co_partitioned, ensure_topics, layout_problem
from tests.e2e.worker_process import start_worker

NAMES = (
    "order-created",
    "order-paid",
    "order-cancelled",
    "order-extended",
    "inventory-reservations",
)


@pytest.mark.parametrize(
    ("counts", "partitions", "says"),
    [
        (dict.fromkeys(NAMES, 4), 4, None),
        ({**dict.fromkeys(NAMES, 8), "order-paid": 4}, 8, "same partition count"),
        (dict.fromkeys(NAMES, 4), 8, "INVENTORY_TOPIC_PARTITIONS=4"),
        ({n: 4 for n in NAMES if n != "order-paid"}, 4, "order-paid do not exist"),
        ({**dict.fromkeys(NAMES, 4), "order-extended": 2}, 4, "order-extended 2"),
    ],
)
def test_layout_problem(counts: dict[str, int], partitions: int, says: str | None) -> None:
    problem = layout_problem(counts, NAMES, partitions)
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem and "\n" not in problem


async def partition_counts(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
    finally:
        await admin.close()


@pytest.mark.stack
async def test_a_worker_refuses_topics_of_different_sizes(
    stack: Any, tmp_path: Path, settings: Settings
) -> None:
    isolated = settings.isolated(f"layout-{uuid.uuid4().hex[:6]}", topic_partitions=4)
    admin = AIOKafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap)
    await admin.start()
    try:  # what a producer that touched the topic first would have left: another count
        await admin.create_topics([NewTopic(isolated.topic_order_paid, 2, 1)])
    finally:
        await admin.close()
    log = tmp_path / "worker.log"
    worker = start_worker(isolated, log)
    try:
        code = await asyncio.to_thread(worker.wait, 90)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    lines = log.read_text().strip().splitlines()
    assert code == 2, lines[-20:]
    assert lines[-1].startswith("inventory serve: topics must have the same partition count")
    assert "Traceback" not in log.read_text()


@pytest.mark.stack
async def test_a_worker_starts_on_a_consistent_layout(settings: Settings) -> None:
    isolated = settings.isolated(f"layout-{uuid.uuid4().hex[:6]}", topic_partitions=3)
    await ensure_topics(isolated)
    await check_topic_layout(isolated)
    counts = await partition_counts(isolated)
    assert {counts[name] for name in co_partitioned(isolated)} == {3}


@pytest.mark.stack
async def test_loadgen_creates_the_order_topics_with_the_configured_count(
    settings: Settings,
) -> None:
    isolated = settings.isolated(f"layout-{uuid.uuid4().hex[:6]}", topic_partitions=6)
    await publish(LoadConfig(count=20, rate=0), isolated)
    counts = await partition_counts(isolated)
    assert len(isolated.order_topics) == 5
    assert {counts[name] for name in isolated.order_topics} == {6}
