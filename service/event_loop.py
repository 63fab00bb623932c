"""The event loop the service's processes run on: uvloop unless told otherwise.

uvloop (by asyncpg's authors) implements asyncio's loop, its sockets and its callbacks on
libuv in Cython. Every process of the service spends a large share of its CPU in the loop
itself: the worker's per-event path through Faust and aiokafka, grpc.aio's callbacks, asyncpg
and Redis round trips. Measured in pairs on the development machine (docs/architecture.md,
"Performance notes"): the worker used 12 % less CPU per order, the gRPC server about 10 % less
per ReserveStock. Nothing in the service depends on the loop's implementation; grpc.aio,
Faust, aiokafka, asyncpg and redis-py all run on either. (Faust's consumer thread keeps an
asyncio loop of its own, which mode starts; it mostly waits for the broker.)
``INVENTORY_EVENT_LOOP=asyncio`` chooses the standard library's loop, e.g. to rule uvloop out
while chasing a problem, and a platform without uvloop (Windows) falls back to it with a
warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
EventLoopChoice = Literal["uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoopChoice) -> LoopFactory | None:
    """uvloop's ``new_event_loop`` when chosen and installed; None means asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed: running on asyncio's event loop")
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """``asyncio.run(main)`` on the chosen loop (the same Ctrl-C and cleanup behaviour)."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: what the running loop is, for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
