"""The stream worker as a separate process, for the crash tests: start, wait on, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings


def worker_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.as_env()}
    env["INVENTORY_ROLE"] = "worker"
    env["INVENTORY_LOG_FORMAT"] = "text"
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """``inventory serve --role worker``, its output appended to ``log_path``."""
    script = Path(sys.executable).with_name("inventory")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    log = log_path.open("ab")
    return subprocess.Popen(
        [*command, "serve", "--role", "worker"],
        env=worker_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM (a drain), then SIGKILL if it has not exited within ``grace_s``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def count(db: AsyncEngine, sql: str) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def at_least(db: AsyncEngine, sql: str, n: int) -> bool:
    return await count(db, sql) >= n


async def at_most(db: AsyncEngine, sql: str, n: int) -> bool:
    return await count(db, sql) <= n


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    within_s: float,
    what: str,
    worker: subprocess.Popen[bytes],
) -> None:
    """Until ``predicate`` holds; fails at once if the worker exits, or after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if worker.poll() is not None:
            raise AssertionError(
                f"the worker exited ({worker.returncode}) while waiting for {what}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
