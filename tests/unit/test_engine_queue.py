"""Which callers read their write back, and which batches run alone (service/engine_queue.py)."""

from __future__ import annotations

import asyncio

import pytest

from service.domain.commands import Command, Commit, Expire, Reserve, Source, UpdateStock
from service.domain.values import Item, Sku, StockOperation
from service.engine_queue import Pending, reads_back, runs_alone

ITEMS = (Item(Sku("p"), 1),)
RPC_RESERVE = Reserve("o", ITEMS, None)
EVENT_RESERVE = Reserve("o", ITEMS, None, source=Source.STREAM, event_id="e")
EVENT_COMMIT = Commit("o", source=Source.STREAM, event_id="e")
EXPIRE = Expire("o")
UPDATE = UpdateStock(Sku("p"), "wh", StockOperation.SET, 5, "count")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (RPC_RESERVE, True),
        (Commit("o"), True),
        (UPDATE, True),
        (EVENT_RESERVE, False),
        (EVENT_COMMIT, False),
        (EXPIRE, False),
    ],
)
def test_which_callers_read_their_write_back(command: Command, expected: bool) -> None:
    assert reads_back(command) is expected


@pytest.mark.parametrize(
    ("commands", "alone"),
    [
        ([EVENT_RESERVE], False),
        ([EVENT_RESERVE, EVENT_COMMIT, EXPIRE], False),
        ([RPC_RESERVE], True),
        ([UPDATE], True),
        ([EVENT_RESERVE, EXPIRE, RPC_RESERVE], True),  # one RPC's caller is enough
    ],
)
def test_a_batch_with_an_rpc_caller_runs_alone(commands: list[Command], alone: bool) -> None:
    loop = asyncio.new_event_loop()
    try:
        batch = [Pending(command, loop.create_future()) for command in commands]
        assert runs_alone(batch) is alone
    finally:
        loop.close()
