"""The stream worker as a separate process, for the crash tests: start, wait on, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
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


def still_running(process: subprocess.Popen[bytes]) -> Callable[[], None]:
    """For ``wait_for(alive=...)``: fail at once when the process exited."""

    def check() -> None:
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited ({process.returncode})")

    return check
