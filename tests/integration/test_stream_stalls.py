"""A quiet order partition whose records were dropped before they reached the agent, on the real
broker of the test stack: the worker's stall watch (``streams/offsets.py``, ``StallWatch``) seeks
it back, where the offset guard alone would wait for a later record that never comes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.bootstrap import Container
from service.config import Settings
from streams.worker import StreamWorker
from tests.integration.test_stream_redelivery import (
    WITHIN_S,
    committed_past,
    one_partition,
    order_states,
    send_created,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

STALL_S = 1.0


@pytest.fixture
async def isolated(settings: Settings) -> AsyncIterator[tuple[Settings, Container]]:
    async with one_partition(settings, consumer_stall_s=STALL_S) as own:
        yield own


def stall_seeks() -> float:
    found = REGISTRY.get_sample_value(
        "inventory_consumer_stall_seeks_total", {"topic": "order-created"}
    )
    return found or 0.0


@pytest.mark.timeout(120)
async def test_records_dropped_before_the_agent_on_a_quiet_partition_are_fetched_again(
    isolated: tuple[Settings, Container],
) -> None:
    settings, container = isolated
    worker = StreamWorker(settings, container)
    await worker.start()
    try:
        first = await send_created(settings, "order-first")
        await wait_for(
            lambda: committed_past(settings, first), within_s=WITHIN_S, what="the first order"
        )
        seeks_before = stall_seeks()
        assert worker.app is not None
        consumer: Any = worker.app.consumer
        [tp] = [tp for tp in consumer.assignment() if tp.topic == settings.topic_order_created]
        # What a hand-off lost to a race with a seek or a rebalance leaves behind: the consumer
        # reads past records that never reached the agent, and no later record comes to show
        # the offset guard a jump.
        consumer.pause_partitions([tp])
        await send_created(settings, "order-dropped-1")
        last = await send_created(settings, "order-dropped-2")
        await consumer.seek(tp, last + 1)
        consumer.resume_partitions([tp])

        await wait_for(
            lambda: committed_past(settings, last),
            within_s=WITHIN_S,
            what="the dropped records fetched again and processed",
        )
        assert stall_seeks() == seeks_before + 1
    finally:
        await worker.stop()
    assert await order_states(container) == {
        "order-first": "RESERVED",
        "order-dropped-1": "RESERVED",
        "order-dropped-2": "RESERVED",
    }
