"""The order batch handler with a fake engine and DLQ: retries, DLQ, never raising."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from service.domain.commands import Command, Extend, OrderEventKind, Reserve, Source
from service.domain.errors import InvalidArgument, Unavailable
from service.domain.results import OrderResult
from service.domain.validation import Limits
from service.domain.values import OrderState, ResultStatus
from service.retry import Backoff
from streams.handler import Incoming, OrderEventHandler
from streams.records import DeadLetter

FAST = Backoff(first_s=0.001, max_s=0.002)


def event(order: str, offset: int, **override: Any) -> Incoming:
    body: dict[str, Any] = {
        "event_id": f"e-{order}",
        "order_id": order,
        "items": [{"product_id": "p", "quantity": 1}],
        "occurred_at": "2024-05-01T12:00:00Z",
    }
    body.update(override)
    return Incoming(
        OrderEventKind.CREATED, "orders", 0, offset, order.encode(), json.dumps(body).encode()
    )


def reserved(order_id: str) -> OrderResult:
    return OrderResult(order_id, OrderState.RESERVED, published=ResultStatus.RESERVED)


class FakeEngine:
    def __init__(self, failures: Sequence[BaseException] = ()) -> None:
        self.failures = list(failures)
        self.calls: list[list[Command]] = []
        self.called = asyncio.Event()
        self.poison: set[str] = set()

    async def execute_many(self, cmds: Sequence[Command]) -> list[Any]:
        self.calls.append(list(cmds))
        self.called.set()
        if self.failures:
            raise self.failures.pop(0)
        out: list[Any] = []
        for cmd in cmds:
            assert isinstance(cmd, Reserve)
            if cmd.order_id in self.poison:
                raise RuntimeError("boom")
            if cmd.order_id == "bad":
                out.append(InvalidArgument("items[0].warehouse_id", "unknown warehouse"))
            else:
                out.append(reserved(cmd.order_id))
        return out


class FakeDlq:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.letters.extend(letters)


def handler(engine: FakeEngine, dlq: FakeDlq, stopping: asyncio.Event | None = None) -> Any:
    return OrderEventHandler(
        engine, dlq, Limits(), stopping=stopping or asyncio.Event(), backoff=FAST
    )


async def test_a_valid_batch_goes_to_the_engine_in_order() -> None:
    engine, dlq = FakeEngine(), FakeDlq()
    h = handler(engine, dlq)
    assert await h.handle([event("a", 0), event("b", 1)])
    assert [c.order_id for c in engine.calls[0]] == ["a", "b"]
    assert all(isinstance(c, Reserve) and c.event_id == f"e-{c.order_id}" for c in engine.calls[0])
    assert dlq.letters == []
    assert h.tally.outcomes["reserved"] == 2


async def test_malformed_events_go_to_the_dlq_and_the_rest_is_processed() -> None:
    engine, dlq = FakeEngine(), FakeDlq()
    bad = Incoming(OrderEventKind.CREATED, "orders", 2, 7, b"k", b"{oops")
    h = handler(engine, dlq)
    assert await h.handle(
        [bad, event("a", 8, items=[{"product_id": "p", "quantity": 0}]), event("b", 9)]
    )
    assert [c.order_id for c in engine.calls[0]] == ["b"]
    assert [(x.partition, x.offset, x.error) for x in dlq.letters] == [
        (2, 7, "json"),
        (0, 8, "invalid"),
    ]
    assert "items[0].quantity" in dlq.letters[1].reason
    assert h.tally.outcomes["dlq"] == 2


async def test_an_engine_error_for_one_event_sends_that_one_to_the_dlq() -> None:
    engine, dlq = FakeEngine(), FakeDlq()
    assert await handler(engine, dlq).handle([event("bad", 0), event("ok", 1)])
    assert [(x.offset, x.error, x.event_id) for x in dlq.letters] == [(0, "rejected", "e-bad")]
    assert dlq.letters[0].reason.startswith("INVALID_ARGUMENT")


async def test_database_down_retries_the_same_batch_until_it_commits() -> None:
    engine = FakeEngine([Unavailable("db down"), Unavailable("db down")])
    dlq = FakeDlq()
    h = handler(engine, dlq)
    assert await h.handle([event("a", 0), event("b", 1)])
    assert h.retrying == 0  # committed: no longer waiting for the database
    assert len(engine.calls) == 3
    assert engine.calls[0] == engine.calls[1] == engine.calls[2]
    assert dlq.letters == []


async def test_database_down_while_stopping_gives_the_batch_up_unacked() -> None:
    stopping = asyncio.Event()
    engine = FakeEngine([Unavailable("db down")] * 1000)
    h = handler(engine, FakeDlq(), stopping)
    task = asyncio.create_task(h.handle([event("a", 0)]))
    assert h.retrying == 0
    await engine.called.wait()
    engine.called.clear()
    await engine.called.wait()  # the database is down: the handler is retrying the batch
    assert h.retrying == 1  # what holds the stall watch (streams/worker.py)
    stopping.set()
    assert await asyncio.wait_for(task, 1) is False
    assert h.retrying == 0  # given up: no longer waiting
    assert await h.handle([event("b", 1)]) is False  # nothing new starts once stopping


async def test_an_untyped_engine_error_halts_instead_of_acking() -> None:
    # The engine types every per-command failure (it isolates the command it fails on, see
    # tests/integration/test_engine.py); anything else escaping it is a bug: never ack.
    engine, dlq = FakeEngine(), FakeDlq()
    engine.poison = {"b"}
    h = handler(engine, dlq)
    assert await h.handle([event("a", 0), event("b", 1), event("c", 2)]) is False
    assert h.halted
    assert len(engine.calls) == 1  # not retried: only Unavailable is
    assert dlq.letters == []


async def test_dlq_publish_failures_are_retried() -> None:
    dlq = FakeDlq(failures=2)
    assert await handler(FakeEngine(), dlq).handle([event("a", 0, order_id=7)])
    assert len(dlq.letters) == 1


async def test_a_bug_in_the_handler_halts_instead_of_acking() -> None:
    class Wrong(FakeEngine):
        async def execute_many(self, cmds: Sequence[Command]) -> list[Any]:
            return []  # wrong length: a contract breach

    h = handler(Wrong(), FakeDlq())
    assert await h.handle([event("a", 0)]) is False
    assert h.halted
    assert await h.handle([event("b", 1)]) is False


@pytest.mark.parametrize("kind", list(OrderEventKind)[:3])
async def test_kinds_map_to_their_commands(kind: OrderEventKind) -> None:
    engine = FakeEngine()
    engine.execute_many = _answer_all  # type: ignore[method-assign]
    raw = json.dumps(
        {
            "event_id": "e",
            "order_id": "o",
            "occurred_at": "2024-05-01T12:00:00Z",
            "items": [{"product_id": "p", "quantity": 1}],
        }
    ).encode()
    h = handler(engine, FakeDlq())
    assert await h.handle([Incoming(kind, "t", 0, 0, None, raw)])


async def _answer_all(cmds: Sequence[Command]) -> list[Any]:
    return [OrderResult(c.order_id, OrderState.RESERVED) for c in cmds]  # type: ignore[union-attr]


def extended(order: str, offset: int, **override: Any) -> Incoming:
    body: dict[str, Any] = {
        "event_id": f"x-{order}-{offset}",
        "order_id": order,
        "ttl_seconds": 600,
        "occurred_at": "2024-05-01T12:00:00Z",
    }
    body.update(override)
    raw = json.dumps(body).encode()
    return Incoming(OrderEventKind.EXTENDED, "extensions", 1, offset, order.encode(), raw)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_order_extended_events_are_handled_like_the_others() -> None:
    seen: list[Command] = []

    async def answer(cmds: Sequence[Command]) -> list[Any]:
        seen.extend(cmds)
        return [
            OrderResult(c.order_id, OrderState.RESERVED, published=ResultStatus.EXTENDED)
            if c.order_id == "o1"
            else OrderResult(c.order_id, None, published=ResultStatus.NOT_EXTENDED)
            for c in cmds
        ]

    engine = FakeEngine()
    engine.execute_many = answer  # type: ignore[method-assign]
    dlq = FakeDlq()
    h = handler(engine, dlq)
    label = {"topic": "order-extended"}
    before = {
        outcome: metric("inventory_events_total", **label, outcome=outcome)
        for outcome in ("extended", "not_extended", "dlq")
    }
    invalid_before = metric("inventory_dlq_events_total", **label, reason="invalid")

    batch = [extended("o1", 0), extended("o2", 1, ttl_seconds=0), extended("ghost", 2)]
    assert await h.handle(batch)

    assert seen == [
        Extend("o1", 600, source=Source.STREAM, event_id="x-o1-0"),
        Extend("ghost", 600, source=Source.STREAM, event_id="x-ghost-2"),
    ]
    [letter] = dlq.letters
    assert (letter.source_topic, letter.partition, letter.offset) == ("extensions", 1, 1)
    assert letter.error == "invalid" and letter.event_id == "x-o2-1"
    assert letter.reason == "ttl_seconds: must be between 1 and 86400, got 0"
    for outcome in ("extended", "not_extended", "dlq"):
        assert metric("inventory_events_total", **label, outcome=outcome) == before[outcome] + 1
    assert metric("inventory_dlq_events_total", **label, reason="invalid") == invalid_before + 1
