"""Disown and settle: Faust's own acks never reach the consumer; settle moves the guard."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types.tuples import ConsumerMessage

from streams.agents import disown, settle
from streams.offsets import OffsetGuard


class FakeConsumer:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: ConsumerMessage) -> bool:
        if message.acked:
            return False
        message.acked = True
        self.acked.append(message.offset)
        return True


def event(offset: int) -> Any:
    message = ConsumerMessage("orders", 0, offset, 0.0, 0, None, b"k", b"v", None)
    message.incref()
    return SimpleNamespace(message=message)


def test_faust_acks_of_a_disowned_batch_reach_nothing() -> None:
    consumer = FakeConsumer()
    events = [event(1), event(2)]
    disown(events)
    for e in events:  # what take_events does when the loop moves on or the stream closes
        assert e.message.ack(consumer) is False
    assert consumer.acked == []


def test_settle_moves_the_guard_not_faust() -> None:
    consumer = FakeConsumer()
    events = [event(1), event(2)]
    guard = OffsetGuard(["orders"])
    tp = events[0].message.tp
    guard.assign(tp, 1)
    disown(events)
    settle(guard, events)
    for e in events:  # a late Faust ack after settle is still a no-op
        e.message.ack(consumer)
    assert consumer.acked == []
    assert guard.committable(tp) == 3
