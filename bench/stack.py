"""The embedded stack for benchmarks: free ports, a temporary directory, migrated."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from db.migrate import upgrade
from service.config import Settings
from service.devtools.stack import EmbeddedStack


@contextmanager
def bench_stack() -> Iterator[tuple[EmbeddedStack, Settings]]:
    data_dir = Path(tempfile.mkdtemp(prefix="inventory-bench-"))
    try:
        with terminated_as_interrupted(), EmbeddedStack.from_env(data_dir) as stack:
            settings = Settings(**stack.overrides)
            upgrade(settings.database_url)
            yield stack, settings
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """Inside the block, SIGTERM interrupts as SIGINT (Ctrl-C) does, so that the block unwinds.

    By default SIGTERM (``timeout``, a cancelled CI job, ``kill``) ends Python without running
    ``finally`` blocks: a bench stopped that way left its PostgreSQL, Redis and broker running.
    SIGINT unwinds, and ``bench/collect.py`` stops a bench past its time with it. It is the
    signal to pass on rather than an exception to raise here: inside ``asyncio.run`` it cancels
    the main task first, so the coroutine's own ``async with`` blocks close; an exception raised
    in the middle of the event loop skipped them, and the loop then waited forever for the tasks
    they left. A handler someone else installed is left alone, as is a block outside the main
    thread (only that thread may set handlers).
    """
    ours = threading.current_thread() is threading.main_thread()
    if not ours or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)
