"""The consumer lag gauge covers the expiry agent's topic, on the real broker of the test stack:
an expiry agent that falls behind the order results shows as lag on ``inventory-reservations``,
where before only the order topics were reported and a worker overloaded by a burst of orders
deferred its expiry bookkeeping unseen (docs/operations.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import REGISTRY

from service.bootstrap import Container
from service.config import Settings
from streams.worker import RESERVATIONS_LABEL, StreamWorker
from tests.integration.test_stream_redelivery import (
    WITHIN_S,
    committed_past,
    one_partition,
    send_created,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.stack


@pytest.fixture
async def isolated(settings: Settings) -> AsyncIterator[tuple[Settings, Container]]:
    async with one_partition(settings) as own:
        yield own


def gauge(label: str) -> float | None:
    return REGISTRY.get_sample_value("inventory_consumer_lag", {"topic": label})


@pytest.mark.timeout(120)
async def test_an_expiry_agent_behind_the_results_shows_as_lag_on_its_topic(
    isolated: tuple[Settings, Container],
) -> None:
    settings, container = isolated
    worker = StreamWorker(settings, container)
    let_go = asyncio.Event()
    await worker.start()
    try:
        assert worker.expiry is not None
        expiry = worker.expiry
        held: list[int] = []
        real_apply = expiry.apply

        async def held_apply(events: Sequence[tuple[int, bytes | None, bytes | None]]) -> None:
            held.append(len(events))  # a slow expiry agent: its batch is not acknowledged yet
            await let_go.wait()
            await real_apply(events)

        expiry.apply = held_apply  # type: ignore[method-assign]
        offset = await send_created(settings, "order-lag")
        await wait_for(
            lambda: committed_past(settings, offset), within_s=WITHIN_S, what="the order"
        )
        # the lag can show as soon as a fetch reports the log end, before the agent takes
        # the result: wait for the agent to hold it first
        await wait_for(lambda: held, within_s=WITHIN_S, what="the expiry agent taking the result")
        lag = await wait_for(
            lambda: worker.update_lag().get(RESERVATIONS_LABEL),
            within_s=WITHIN_S,
            what="the unacknowledged result counted as expiry lag",
        )
        assert lag >= 1
        assert gauge(RESERVATIONS_LABEL) == lag
        # the worker's own record of its commits trails the broker's by a commit's answer
        await wait_for(
            lambda: worker.update_lag()["order-created"] == 0,
            within_s=WITHIN_S,
            what="no lag on the order topic",
        )
        assert worker.update_lag()[RESERVATIONS_LABEL] == lag  # still held

        let_go.set()
        await wait_for(
            lambda: worker.update_lag()[RESERVATIONS_LABEL] == 0,
            within_s=WITHIN_S,
            what="the expiry agent caught up and committed",
        )
        assert "order-lag" in expiry
    finally:
        let_go.set()  # a failed test must not leave the agent held through the worker's stop
        await worker.stop()
