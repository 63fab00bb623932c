"""The expiry agent's glue around its Faust table, without a broker (the app is never started).

The end-to-end behaviour (real broker, recovery, kill -9) is in tests/e2e/test_expiry*.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from service.config import Settings
from service.domain.results import OrderResult
from streams.app import create_app
from streams.expiry.agent import ExpiryAgent
from streams.expiry.changelog import Record
from streams.expiry.schedule import Entry
from streams.kafka_batches import partition_for

SETTINGS = Settings(app_id="expiry-unit", topic_partitions=4)
EXPIRES = "2030-01-01T00:00:00+00:00"
EXPIRES_S = 1893456000.0


class NoEngine:
    async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]:
        raise AssertionError("not in these tests")


class FakeChangelog:
    def __init__(self) -> None:
        self.written: list[Record] = []
        self.fail_next = 0
        self.block = False

    async def write(self, records: Sequence[Record]) -> list[Record]:
        if self.block:
            await asyncio.Event().wait()
        if self.fail_next:
            self.fail_next -= 1
            return list(records)
        self.written.extend(records)
        return []


@pytest.fixture
def agent() -> ExpiryAgent:
    made = ExpiryAgent(create_app(SETTINGS), SETTINGS, NoEngine())
    made.changelog = FakeChangelog()  # type: ignore[assignment]
    return made


def changelog(agent: ExpiryAgent) -> FakeChangelog:
    fake = agent.changelog
    assert isinstance(fake, FakeChangelog)
    return fake


def event(order: str, status: str, **extra: Any) -> tuple[bytes, bytes]:
    body = {"order_id": order, "status": status, "items": [], "at": EXPIRES, **extra}
    return order.encode(), json.dumps(body).encode()


async def test_reserved_puts_and_a_terminal_status_deletes(agent: ExpiryAgent) -> None:
    key, value = event("o1", "RESERVED", expires_at=EXPIRES)
    await agent.apply([(2, key, value)])
    assert agent.table.data["o1"] == EXPIRES_S
    assert agent.schedule.entries() == [Entry("o1", EXPIRES_S, 2)]
    key, value = event("o1", "COMMITTED")
    await agent.apply([(2, key, value)])
    assert "o1" not in agent and len(agent.schedule) == 0
    assert changelog(agent).written == [(2, "o1", EXPIRES_S), (2, "o1", None)]


async def test_a_backorder_filled_keeps_the_hold_it_reports_on(agent: ExpiryAgent) -> None:
    # the order is still RESERVED with the same deadline: dropping its timer would leave it
    # to the sweeper's backstop
    await agent.apply([(2, *event("o1", "RESERVED", expires_at=EXPIRES))])
    await agent.apply([(2, *event("o1", "BACKORDER_FILLED"))])
    assert agent.schedule.entries() == [Entry("o1", EXPIRES_S, 2)]
    assert changelog(agent).written == [(2, "o1", EXPIRES_S)]


LATER = "2030-01-01T00:30:00+00:00"  # EXPIRES + 30 minutes
LATER_S = EXPIRES_S + 1800


async def test_an_extension_reschedules_the_timer_to_the_new_deadline(agent: ExpiryAgent) -> None:
    await agent.apply([(2, *event("o1", "RESERVED", expires_at=EXPIRES))])
    await agent.apply([(2, *event("o1", "EXTENDED", expires_at=LATER))])
    assert agent.table.data["o1"] == LATER_S
    assert agent.schedule.entries() == [Entry("o1", LATER_S, 2)]
    assert agent.schedule.next_due() == LATER_S  # the old deadline is gone from the index
    assert changelog(agent).written == [(2, "o1", EXPIRES_S), (2, "o1", LATER_S)]
    # the order then ends like any other: the entry goes
    await agent.apply([(2, *event("o1", "EXPIRED"))])
    assert "o1" not in agent and len(agent.schedule) == 0


async def test_an_extension_of_an_entry_in_flight_replaces_it(agent: ExpiryAgent) -> None:
    # the timer took the old deadline to the engine; the extension lands meanwhile: the new
    # deadline waits, and the engine's answer for the old one does not settle it
    await agent.apply([(0, *event("o1", "RESERVED", expires_at=EXPIRES))])
    assert agent.schedule.take_due(EXPIRES_S, 10) == [Entry("o1", EXPIRES_S, 0)]
    await agent.apply([(0, *event("o1", "EXTENDED", expires_at=LATER))])
    assert agent.schedule.done("o1") is None
    assert agent.schedule.entries() == [Entry("o1", LATER_S, 0)]
    assert agent.schedule.take_due(LATER_S - 1, 10) == []


async def test_an_extension_the_table_never_saw_reserved_is_scheduled(agent: ExpiryAgent) -> None:
    # its RESERVED event went to another worker before a rebalance, or was skipped
    await agent.apply([(1, *event("o1", "EXTENDED", expires_at=LATER))])
    assert agent.schedule.entries() == [Entry("o1", LATER_S, 1)]
    assert changelog(agent).written == [(1, "o1", LATER_S)]


async def test_a_refused_extension_changes_nothing(agent: ExpiryAgent) -> None:
    await agent.apply([(2, *event("o1", "RESERVED", expires_at=EXPIRES))])
    await agent.apply([(2, *event("o1", "NOT_EXTENDED", reason="order is RESERVED"))])
    # an unknown order's refusal schedules nothing either
    await agent.apply([(2, *event("o2", "NOT_EXTENDED", reason="unknown order"))])
    assert agent.schedule.entries() == [Entry("o1", EXPIRES_S, 2)]
    assert agent.table.data["o1"] == EXPIRES_S and "o2" not in agent
    assert changelog(agent).written == [(2, "o1", EXPIRES_S)]


async def test_an_extension_without_a_deadline_is_skipped(agent: ExpiryAgent) -> None:
    await agent.apply([(2, *event("o1", "RESERVED", expires_at=EXPIRES))])
    await agent.apply([(2, *event("o1", "EXTENDED"))])  # unusable: the old deadline stands
    assert agent.schedule.entries() == [Entry("o1", EXPIRES_S, 2)]


async def test_a_redelivered_extension_writes_nothing_more(agent: ExpiryAgent) -> None:
    extended = event("o1", "EXTENDED", expires_at=LATER)
    await agent.apply([(3, *event("o1", "RESERVED", expires_at=EXPIRES)), (3, *extended)])
    await agent.apply([(3, *extended)])
    assert changelog(agent).written == [(3, "o1", EXPIRES_S), (3, "o1", LATER_S)]


async def test_a_redelivery_writes_nothing_more(agent: ExpiryAgent) -> None:
    reserved = event("o1", "RESERVED", expires_at=EXPIRES)
    expired = event("o1", "EXPIRED")
    await agent.apply([(0, *reserved), (0, *reserved), (0, *expired), (0, *expired)])
    assert changelog(agent).written == [(0, "o1", EXPIRES_S), (0, "o1", None)]


async def test_unusable_events_are_skipped_and_the_batch_goes_on(agent: ExpiryAgent) -> None:
    good = event("ok", "RESERVED", expires_at=EXPIRES)
    await agent.apply([(1, b"x", b"not json"), (1, *event("x", "RESERVED")), (1, *good)])
    assert [e.order_id for e in agent.schedule.entries()] == ["ok"]


async def test_a_failed_changelog_write_is_resent_from_the_current_state(
    agent: ExpiryAgent,
) -> None:
    changelog(agent).fail_next = 1
    await agent.apply([(3, *event("o1", "RESERVED", expires_at=EXPIRES))])
    assert changelog(agent).written == []
    await agent.apply([(3, *event("o1", "RELEASED"))])  # the state moved on meanwhile
    # the re-send carries the current state (gone), never the stale RESERVED value
    assert changelog(agent).written == [(3, "o1", None)]


async def test_the_timers_deletes_never_wait_for_the_broker(agent: ExpiryAgent) -> None:
    await agent.apply([(1, *event("o1", "RESERVED", expires_at=EXPIRES))])
    changelog(agent).block = True  # Kafka is down
    await asyncio.wait_for(agent._forget([Entry("o1", EXPIRES_S, 1)]), timeout=1)
    assert "o1" not in agent
    await agent._drain(timeout_s=0.05)  # stop gives up on the unsent tombstone


async def test_the_timers_deletes_reach_the_changelog(agent: ExpiryAgent) -> None:
    await agent.apply([(1, *event("o1", "RESERVED", expires_at=EXPIRES))])
    await agent._forget([Entry("o1", EXPIRES_S, 1)])
    await agent._drain(timeout_s=1)
    assert changelog(agent).written[-1] == (1, "o1", None)


async def test_a_rebuild_keeps_only_the_assigned_partitions(agent: ExpiryAgent) -> None:
    for order, partition in (("a", 0), ("b", 1), ("c", 2)):
        await agent.apply([(partition, *event(order, "RESERVED", expires_at=EXPIRES))])
    # restored from the changelog without being seen: placed where the relay would put it
    agent.table.data["d"] = EXPIRES_S
    d_partition = partition_for(b"d", list(range(4)))

    agent._rebuild({1, 2, d_partition})

    expected = {"b", "c", "d"}
    assert {e.order_id for e in agent.schedule.entries()} == expected
    assert set(agent.table.data) == expected  # revoked partitions' keys leave memory
    assert agent.restored == 3 and agent.recoveries == 1


async def test_an_assignment_drops_revoked_partitions_from_the_index(agent: ExpiryAgent) -> None:
    await agent.apply([(0, *event("a", "RESERVED", expires_at=EXPIRES))])
    await agent.apply([(1, *event("b", "RESERVED", expires_at=EXPIRES))])

    class TP:
        def __init__(self, topic: str, partition: int) -> None:
            self.topic, self.partition = topic, partition

    assigned = {TP(SETTINGS.topic_reservations, 1), TP("order-created", 0)}
    await agent._on_assigned(None, assigned, signal=None)
    assert [e.order_id for e in agent.schedule.entries()] == ["b"]
