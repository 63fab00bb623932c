"""``bench.stack.terminated_as_interrupted``: SIGTERM unwinds a bench as Ctrl-C does, instead
of ending the process with its embedded stack still running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bench.stack import terminated_as_interrupted

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_inside_the_block_interrupts_and_the_default_comes_back() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(KeyboardInterrupt), terminated_as_interrupted():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_handler_installed_by_someone_else_is_left_alone() -> None:
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with terminated_as_interrupted():
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_outside_the_main_thread_nothing_is_installed() -> None:
    handlers: list[object] = []

    def enter() -> None:
        with terminated_as_interrupted():
            handlers.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert handlers == [signal.SIG_DFL]


def test_a_terminated_bench_unwinds_its_coroutine_then_its_stack(tmp_path: Path) -> None:
    """The shape of every bench: ``asyncio.run`` of a coroutine holding resources, inside the
    stack's block. SIGTERM while it waits: the coroutine's cleanup runs, then the block's."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from bench.stack import terminated_as_interrupted

        async def bench():
            try:
                print("ready", flush=True)
                await asyncio.sleep(60)
            finally:
                open({str(tmp_path / "coroutine")!r}, "w").close()

        with terminated_as_interrupted():
            try:
                asyncio.run(bench())
            finally:
                open({str(tmp_path / "stack")!r}, "w").close()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) != 0
    assert (tmp_path / "coroutine").exists()
    assert (tmp_path / "stack").exists()
