"""A second `make run` next to a live one, and the commands that find the live one.

One `inventory dev` runs for the module. A second on its data folder, or on one of its ports,
exits 2 with one line naming it, and the first keeps serving: readiness 200, a ReserveStock
reserves. `inventory check` and `inventory migrate` with no URL in the environment reach it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.devtools.ports import StackPorts, free_port
from tests.dev_process import DevRun, dev_env, inventory_command, port_args, start_dev
from tests.http_client import get

COMMAND_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    data_dir = tmp_path_factory.mktemp("dev") / "data"
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    run = start_dev(data_dir, ports)
    try:
        run.wait_for("ready")
        yield run
        assert run.interrupt() == 0
    finally:
        run.kill()


def inventory(
    *args: str, data_dir: Path, grpc_port: int = 0, http_port: int = 0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*inventory_command(), *args],
        env=dev_env(data_dir, grpc_port, http_port),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def other_ports() -> StackPorts:
    return StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


async def still_serves(run: DevRun, order_id: str) -> None:
    status, body = await get(run.http_port, "/readiness")
    assert status == 200, body
    async with grpc.aio.insecure_channel(f"127.0.0.1:{run.grpc_port}") as channel:
        reply = await pb_grpc.InventoryServiceStub(channel).ReserveStock(
            pb.ReserveStockRequest(
                order_id=order_id,
                items=[pb.StockItem(product_id="prod-123", variant_id="var-456", quantity=1)],
                ttl_seconds=60,
            ),
            timeout=10,
        )
    assert reply.state == pb.ORDER_STATE_RESERVED, reply


async def test_a_second_dev_on_the_same_data_folder_refuses_and_the_first_serves_on(
    first: DevRun,
) -> None:
    record = (first.data_dir / "instance.json").read_text()
    servers = sorted(p.pid for p in first.descendants())

    second = inventory(
        "dev", *port_args(other_ports()), data_dir=first.data_dir, grpc_port=free_port()
    )

    line = refusal(second)
    assert "already running" in line
    assert f"pid {first.proc.pid}" in line and str(first.data_dir) in line
    assert f"postgres {first.ports.postgres}" in line and f"grpc {first.grpc_port}" in line
    assert (first.data_dir / "instance.json").read_text() == record
    assert sorted(p.pid for p in first.descendants()) == servers
    await still_serves(first, "second-dev-same-folder")


@pytest.mark.parametrize("taken", ["postgres", "kafka", "grpc"])
async def test_a_second_dev_on_a_taken_port_refuses_naming_the_first(
    first: DevRun, tmp_path: Path, taken: str
) -> None:
    ports = other_ports()
    grpc_port = free_port()
    if taken == "grpc":
        grpc_port = first.grpc_port
    else:
        ports = StackPorts(**{**ports.__dict__, taken: getattr(first.ports, taken)})

    second = inventory("dev", *port_args(ports), data_dir=tmp_path / "other", grpc_port=grpc_port)

    line = refusal(second)
    assert "is taken by the `inventory dev` running as" in line
    assert f"pid {first.proc.pid}" in line and str(first.data_dir) in line
    await still_serves(first, f"second-dev-port-{taken}")


def test_reset_refuses_while_the_stack_runs(first: DevRun) -> None:
    line = refusal(inventory("dev", "--reset", data_dir=first.data_dir))
    assert "already running" in line
    assert (first.data_dir / "postgres" / "PG_VERSION").exists()


@pytest.mark.parametrize("command", ["check", "migrate"])
def test_commands_without_a_url_reach_the_dev_stack(first: DevRun, command: str) -> None:
    result = inventory(command, data_dir=first.data_dir)

    assert result.returncode == 0, result.stdout + result.stderr
    where = result.stderr.splitlines()
    assert len(where) == 1, result.stderr
    assert f"127.0.0.1:{first.ports.postgres}/inventory" in where[0]
    assert f"pid {first.proc.pid}" in where[0]


def test_the_record_names_the_service_ports(first: DevRun) -> None:
    record = json.loads((first.data_dir / "instance.json").read_text())
    assert record["pid"] == first.proc.pid
    assert record["ports"]["http"] == first.http_port
