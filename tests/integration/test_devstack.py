"""The embedded stack: `inventory dev` end to end, and the session fixture the suite runs on."""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.migrate import at_head, head_revision
from db.seed import DEMO_WAREHOUSES, demo_stocks
from service.config import Settings
from service.devstack import EmbeddedStack, StackPorts, free_port, kafka_metadata_ok

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


# --- `inventory dev` as a user runs it ---------------------------------------------------


@dataclass
class DevRun:
    """One `inventory dev` process, in its own process group like a terminal job."""

    proc: subprocess.Popen[str]
    ports: StackPorts
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def wait_for(self, wanted: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        while True:
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                pytest.fail(f"no {wanted!r} within {timeout_s} s:\n{self.transcript}")
            if line == "":  # end of output: the process exited
                pytest.fail(f"`inventory dev` exited before {wanted!r}:\n{self.transcript}")
            if line.strip() == wanted:
                return

    @property
    def transcript(self) -> str:
        return "".join(self.output)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; returns the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`inventory dev` did not stop on SIGINT:\n{self.transcript}")

    def psql(self, sql: str) -> str:
        return psql(self.ports, sql)


def _read_lines(run: DevRun) -> None:
    assert run.proc.stdout is not None
    for line in run.proc.stdout:
        run.output.append(line)
        run.lines.put(line)
    run.lines.put("")


def _inventory_command() -> list[str]:
    script = Path(sys.executable).with_name("inventory")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def start_dev(data_dir: Path, ports: StackPorts) -> DevRun:
    env = dict(os.environ)
    for name in ("INVENTORY_DATABASE_URL", "INVENTORY_REDIS_URL", "INVENTORY_KAFKA_BOOTSTRAP"):
        env.pop(name, None)  # this test is about the embedded components
    env.update(
        INVENTORY_DEV_DATA_DIR=str(data_dir),
        INVENTORY_GRPC_HOST="127.0.0.1",
        INVENTORY_GRPC_PORT=str(free_port()),
        INVENTORY_HTTP_HOST="127.0.0.1",
        INVENTORY_HTTP_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    argv = [*_inventory_command(), "dev"]
    argv += ["--postgres-port", str(ports.postgres), "--redis-port", str(ports.redis)]
    argv += ["--kafka-port", str(ports.kafka)]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = DevRun(proc, ports)
    threading.Thread(target=_read_lines, args=(run,), daemon=True).start()
    return run


def psql(ports: StackPorts, sql: str) -> str:
    from service.devstack import _postgres_bin

    argv = [str(_postgres_bin() / "psql"), "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]
    argv += ["-h", "127.0.0.1", "-p", str(ports.postgres), "-U", "postgres", "-d", "inventory"]
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    assert result.returncode == 0, f"psql {sql!r}: {result.stderr}"
    return result.stdout.strip()


def insert_warehouse(warehouse_id: str, name: str) -> str:
    return (
        "INSERT INTO warehouses (id, name, priority, active) "
        f"VALUES ('{warehouse_id}', '{name}', 5, true)"
    )


def assert_all_gone(processes: list[psutil.Process]) -> None:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except psutil.NoSuchProcess:
            continue
    assert not alive, f"left behind: {alive}"


@pytest.fixture
def dev_ports() -> StackPorts:
    return StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())


@pytest.fixture
def dev_run_cleanup() -> Iterator[list[DevRun]]:
    """Kill whatever a failed test left running (the happy path stops it with SIGINT)."""
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            leftovers = run.descendants()
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def test_dev_starts_migrated_seeded_stack_and_ctrl_c_leaves_nothing(
    tmp_path: Path, dev_ports: StackPorts, dev_run_cleanup: list[DevRun]
) -> None:
    run = start_dev(tmp_path / "dev", dev_ports)
    dev_run_cleanup.append(run)
    run.wait_for("ready")
    started = run.descendants()
    names = " ".join(p.name() for p in started)
    assert "postgres" in names and "redis" in names and "tansu" in names, names

    assert run.psql("SELECT version_num FROM alembic_version") == head_revision()
    warehouses = set(run.psql("SELECT id FROM warehouses").split())
    assert warehouses == {"default", *(w.id for w in DEMO_WAREHOUSES)}
    stocks = demo_stocks("default")
    assert int(run.psql("SELECT count(*) FROM stocks")) == len(stocks)
    assert run.psql("SELECT bool_and(total = available + reserved) FROM stocks") == "t"
    movements = run.psql("SELECT count(*) FROM stock_movements WHERE actor = 'seed'")
    assert int(movements) == len(stocks)
    assert kafka_metadata_ok("127.0.0.1", dev_ports.kafka or 0)
    assert (tmp_path / "dev" / "logs" / "tansu.log").exists()
    assert "admin token" in run.transcript

    assert run.interrupt() == 0
    assert_all_gone(started)


def test_dev_restart_on_same_data_dir_keeps_the_data(
    tmp_path: Path, dev_ports: StackPorts, dev_run_cleanup: list[DevRun]
) -> None:
    data_dir = tmp_path / "dev"
    first = start_dev(data_dir, dev_ports)
    dev_run_cleanup.append(first)
    first.wait_for("ready")
    first.psql(
        "INSERT INTO warehouses (id, name, priority, active) VALUES ('wh-kept', 'Kept', 5, true)"
    )
    first.psql("UPDATE stocks SET available = 7, total = 7 WHERE product_id = 'prod-789'")
    assert first.interrupt() == 0

    second = start_dev(data_dir, dev_ports)
    dev_run_cleanup.append(second)
    second.wait_for("ready")
    started = second.descendants()
    assert second.psql("SELECT name FROM warehouses WHERE id = 'wh-kept'") == "Kept"
    assert second.psql("SELECT total FROM stocks WHERE product_id = 'prod-789'") == "7"
    # the seed is idempotent: nothing doubled
    assert int(second.psql("SELECT count(*) FROM stocks")) == len(demo_stocks("default"))
    assert int(second.psql("SELECT count(*) FROM stock_movements")) == len(demo_stocks("default"))
    assert second.interrupt() == 0
    assert_all_gone(started)


def test_a_start_after_a_killed_run_stops_what_that_run_left(tmp_path: Path) -> None:
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    first = EmbeddedStack(tmp_path, ports).start()
    leftovers = [psutil.Process(pid) for pid in first.pids]
    atexit.unregister(first.stop)  # as if its process had been SIGKILLed: nobody stops it
    with EmbeddedStack(tmp_path, ports) as second:
        assert_all_gone(leftovers)
        assert set(second.pids).isdisjoint(p.pid for p in leftovers)
        assert second.postgres is not None
        assert second.postgres.psql("SELECT 1", "inventory") == "1"
    first._started = False  # its processes are gone already


# --- the session fixture -----------------------------------------------------------------


async def test_session_stack_is_migrated_and_holds_only_the_default_warehouse(
    db_engine: AsyncEngine, settings: Settings
) -> None:
    assert await at_head(db_engine)
    async with db_engine.begin() as conn:
        warehouses = (await conn.execute(text("SELECT id FROM warehouses"))).scalars().all()
        assert warehouses == [settings.default_warehouse_id]
        await conn.execute(text(insert_warehouse("wh-leak", "Leak")))


async def test_each_test_starts_from_clean_tables(
    db_engine: AsyncEngine, settings: Settings
) -> None:
    async with db_engine.connect() as conn:
        warehouses = (await conn.execute(text("SELECT id FROM warehouses"))).scalars().all()
    assert warehouses == [settings.default_warehouse_id]


async def test_stack_faults_keep_data_and_come_back(
    stack: EmbeddedStack, db_engine: AsyncEngine, settings: Settings
) -> None:
    if stack.postgres is None or stack.broker is None or stack.redis is None:
        pytest.skip("the stack uses external components")
    async with db_engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO warehouses (id, name, priority, active) VALUES ('wh-f', 'F', 1, true)"
            )
        )
    await db_engine.dispose()

    stack.stop_postgres()
    with pytest.raises(OSError):
        _connect(stack.postgres.port)
    stack.start_postgres()
    async with db_engine.connect() as conn:
        name = await conn.scalar(text("SELECT name FROM warehouses WHERE id = 'wh-f'"))
    assert name == "F"

    stack.pause_broker()
    assert not kafka_metadata_ok("127.0.0.1", stack.broker.port, timeout_s=0.5)
    stack.resume_broker()
    assert kafka_metadata_ok("127.0.0.1", stack.broker.port)

    stack.stop_redis()
    assert not _redis_answers(stack.redis.port)
    stack.start_redis()
    assert _redis_answers(stack.redis.port)


def _connect(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _redis_answers(port: int) -> bool:
    from service.devstack import redis_ping_ok

    return redis_ping_ok("127.0.0.1", port)


def test_pgbench_ships_with_the_stack(stack: EmbeddedStack) -> None:
    assert stack.pgbench_path.exists()
