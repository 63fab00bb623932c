"""The embedded stack: `inventory dev` end to end, and the session fixture the suite runs on."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.migrate import at_head, head_revision
from db.seed import DEMO_WAREHOUSES, demo_stocks
from service.config import Settings
from service.devtools.broker import kafka_metadata_ok
from service.devtools.instance import StackInUse, live_instance
from service.devtools.ports import StackPorts, free_port
from service.devtools.process import StackError
from service.devtools.stack import EmbeddedStack, reset_data_dir
from tests.dev_process import DevRun, start_dev

# --- `inventory dev` as a user runs it ---------------------------------------------------


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
        run.kill()


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


START_AND_WAIT = """
import signal, sys
from pathlib import Path
from service.devtools.ports import StackPorts
from service.devtools.stack import EmbeddedStack
postgres, redis, kafka = (int(p) for p in sys.argv[2:5])
stack = EmbeddedStack(Path(sys.argv[1]), StackPorts(postgres, redis, kafka)).start()
print(" ".join(str(pid) for pid in stack.pids), flush=True)
signal.pause()
"""


def test_a_start_after_a_killed_run_stops_what_that_run_left(tmp_path: Path) -> None:
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    argv = [sys.executable, "-c", START_AND_WAIT, str(tmp_path)]
    argv += [str(ports.postgres), str(ports.redis), str(ports.kafka)]
    owner = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        leftovers = [psutil.Process(int(pid)) for pid in owner.stdout.readline().split()]
        assert len(leftovers) == 3
        assert live_instance(tmp_path) is not None
    finally:
        owner.send_signal(signal.SIGKILL)  # its servers live on, with nobody to stop them
        owner.wait()
    assert live_instance(tmp_path) is None  # the kernel dropped the dead owner's lock
    with EmbeddedStack(tmp_path, ports) as second:
        assert_all_gone(leftovers)
        assert set(second.pids).isdisjoint(p.pid for p in leftovers)
        assert second.postgres is not None
        assert second.postgres.psql("SELECT 1", "inventory") == "1"


def test_a_second_stack_on_a_live_ones_folder_or_port_refuses_and_changes_nothing(
    tmp_path: Path,
) -> None:
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    with EmbeddedStack(tmp_path / "first", ports) as first:
        record = (tmp_path / "first" / "instance.json").read_text()
        other_ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
        with pytest.raises(StackInUse, match=f"already running.*{tmp_path / 'first'}"):
            EmbeddedStack(tmp_path / "first", other_ports).start()
        same_redis = StackPorts(postgres=free_port(), redis=ports.redis, kafka=free_port())
        with pytest.raises(StackInUse, match=f"port {ports.redis} \\(redis\\) is taken by"):
            EmbeddedStack(tmp_path / "second", same_redis).start()
        assert (tmp_path / "first" / "instance.json").read_text() == record
        assert all(psutil.pid_exists(pid) for pid in first.pids)
        instance = live_instance(tmp_path / "first")
        assert instance is not None and instance.ports["postgres"] == ports.postgres
        assert json.loads(record)["urls"]["database_url"] == first.urls["database_url"]


def test_reset_refuses_a_live_stack_and_wipes_a_stopped_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    with EmbeddedStack(data_dir, ports):
        with pytest.raises(StackInUse):
            reset_data_dir(data_dir)
        assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert reset_data_dir(data_dir)
    assert not data_dir.exists()
    assert not reset_data_dir(data_dir)


def test_reset_leaves_a_folder_that_is_not_a_stacks_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StackError, match="not deleting it"):
        reset_data_dir(tmp_path)
    assert (tmp_path / "notes.txt").exists()


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
    from service.devtools.redis import redis_ping_ok

    return redis_ping_ok("127.0.0.1", port)


def test_pgbench_ships_with_the_stack(stack: EmbeddedStack) -> None:
    assert stack.pgbench_path.exists()


async def test_a_new_wal_segment_is_not_filled_with_zeroes_first(
    stack: EmbeddedStack, db_engine: AsyncEngine
) -> None:
    """The COMMIT that opens a WAL segment of a new cluster does not wait for 16 MB of zeroes
    (``service/devtools/postgres.py`` says why)."""
    if stack.postgres is None:
        pytest.skip("the stack uses an external PostgreSQL")
    async with db_engine.connect() as conn:
        assert await conn.scalar(text("SHOW wal_init_zero")) == "off"
