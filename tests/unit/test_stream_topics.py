"""Every order topic is wired the same way: an agent, the OffsetGuard, the co-partitioning
check, the topics the worker creates. Without a broker (the app is never started)."""

from __future__ import annotations

import asyncio

from service.config import TOPIC_FIELDS, Settings
from service.domain.validation import Limits
from streams.agents import register_order_agents
from streams.app import Topics, co_partitioned, create_app
from streams.handler import OrderEventHandler
from streams.offsets import OffsetGuard
from streams.records import TopicKinds

SETTINGS = Settings(app_id="topics-unit").isolated("t")


class Unused:
    async def execute_many(self, cmds: object) -> list[object]:
        raise AssertionError("not in these tests")

    async def send(self, letters: object) -> None:
        raise AssertionError("not in these tests")


def test_the_order_topics_are_the_five_consumed_ones() -> None:
    assert SETTINGS.order_topics == (
        "order-created-t",
        "order-paid-t",
        "order-cancelled-t",
        "order-extended-t",
        "order-returned-t",
    )
    assert tuple(name for _, name in TopicKinds.from_settings(SETTINGS).pairs()) == (
        SETTINGS.order_topics
    )


def test_every_order_topic_is_co_partitioned_with_the_results_and_created_at_start() -> None:
    assert co_partitioned(SETTINGS) == (*SETTINGS.order_topics, SETTINGS.topic_reservations)
    # the worker creates every topic of the settings (TOPIC_FIELDS), the new one included
    assert set(Topics.from_settings(SETTINGS).all) == {getattr(SETTINGS, f) for f in TOPIC_FIELDS}


async def test_each_order_topic_gets_a_guarded_agent_of_its_own() -> None:
    guard = OffsetGuard(SETTINGS.order_topics)
    app = create_app(SETTINGS, guard)
    handler = OrderEventHandler(Unused(), Unused(), Limits(), stopping=asyncio.Event())
    runners = register_order_agents(app, SETTINGS, guard, handler)
    assert len(runners) == 5
    agents = {name.rsplit(".", 1)[-1]: agent for name, agent in app.agents.items()}
    assert set(agents) == {
        "orders-created",
        "orders-paid",
        "orders-cancelled",
        "orders-extended",
        "orders-returned",
    }
    topics = {name: set(agent.channel.topics) for name, agent in agents.items()}
    assert topics["orders-extended"] == {SETTINGS.topic_order_extended}
    assert topics["orders-returned"] == {SETTINGS.topic_order_returned}
    assert all(agent.concurrency == 1 for agent in agents.values())
    assert guard.guards(SETTINGS.topic_order_extended)
    assert set().union(*topics.values()) == set(SETTINGS.order_topics) == guard.topics
