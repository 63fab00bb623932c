"""service/event_loop.py: the loop `inventory serve` runs on, and what the service relies on
from it (Ctrl-C and SIGTERM handlers, cancellation unwinding, threads handing work back)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
from typing import get_args

import pytest

from service import event_loop
from service.config import Settings

CHOICES = get_args(event_loop.EventLoopChoice)


def test_the_setting_offers_exactly_the_choices_of_the_module() -> None:
    assert Settings.model_fields["event_loop"].default == "uvloop"
    assert get_args(Settings.model_fields["event_loop"].annotation) == CHOICES


@pytest.mark.parametrize("choice", CHOICES)
def test_run_returns_the_result_on_the_chosen_loop(choice: event_loop.EventLoopChoice) -> None:
    async def main() -> tuple[str, int]:
        await asyncio.sleep(0)
        return event_loop.running_loop_name(), 42

    assert event_loop.run(main(), choice) == (choice, 42)


def test_without_uvloop_it_falls_back_to_asyncio_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError

    async def main() -> str:
        return event_loop.running_loop_name()

    assert event_loop.run(main(), "uvloop") == "asyncio"
    assert "uvloop is not installed" in caplog.text


@pytest.mark.parametrize("choice", CHOICES)
def test_signal_handlers_threads_and_executors_work_on_the_loop(
    choice: event_loop.EventLoopChoice,
) -> None:
    """What lifecycle.run uses: loop.add_signal_handler for SIGTERM, call_soon_threadsafe from
    other threads (gRPC's and the Kafka client's callbacks), run_in_executor."""

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        seen: list[str] = []
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        try:
            threading.Thread(target=loop.call_soon_threadsafe, args=(seen.append, "thread")).start()
            seen.append(await loop.run_in_executor(None, lambda: "executor"))
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(stopped.wait(), timeout=5)
            seen.append("sigterm")
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        return sorted(seen)

    assert event_loop.run(main(), choice) == ["executor", "sigterm", "thread"]


@pytest.mark.parametrize("choice", CHOICES)
def test_ctrl_c_cancels_the_main_task_so_its_cleanup_runs(
    choice: event_loop.EventLoopChoice,
) -> None:
    """As asyncio.run: SIGINT cancels the main coroutine (its ``finally`` and ``async with``
    blocks run) and then raises KeyboardInterrupt. bench/stack.py turns SIGTERM into SIGINT for
    this, and `inventory dev` stops on it. A child process: the signal goes to its main thread."""
    script = textwrap.dedent(
        f"""
        import asyncio, signal
        from service import event_loop

        async def main():
            asyncio.get_running_loop().call_later(0.2, signal.raise_signal, signal.SIGINT)
            try:
                await asyncio.sleep(30)
            finally:
                print("cleanup ran", flush=True)

        try:
            event_loop.run(main(), {choice!r})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.split() == ["cleanup", "ran", "interrupted"], done.stderr
