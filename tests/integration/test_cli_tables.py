"""`inventory stock ls` and `inventory movements`: the real command (a subprocess) against a
gRPC server on a free port, the real engine and PostgreSQL.

They page through ListStock / ListMovements to the last page, print a table (rich) or, with
``--json``, one JSON object per line, and exit 0; a server they cannot reach is one line on
stderr and exit 2. The server runs in this test's event loop, so the command runs as an
asyncio subprocess (a blocking ``subprocess.run`` would keep the server from answering).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from db.seed import demo_stocks, seed_demo
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.commands.api_client import PAGE_SIZE, instant, pages
from service.commands.target import grpc_target
from service.devtools.instance import InstanceLock
from service.devtools.ports import free_port
from tests.dev_process import inventory_command
from tests.integration.test_api import TOKEN, Api, reserve_request, serving

COMMAND_TIMEOUT_S = 120


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict[str, Any]]:
        assert self.returncode == 0, self.stderr
        return [json.loads(line) for line in self.stdout.splitlines()]


@pytest.fixture
async def api(container: Container) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


async def inventory(port: int, *args: str, **env: str) -> Done:
    """``inventory <args>`` pointed at the server on ``port`` through INVENTORY_GRPC_*."""
    environ = {
        **os.environ,
        "INVENTORY_GRPC_HOST": "127.0.0.1",
        "INVENTORY_GRPC_PORT": str(port),
        "COLUMNS": "250",  # rich's width when stdout is not a terminal
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        *inventory_command(),
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


# -- inventory stock ls --


async def test_stock_ls_prints_a_table_of_every_row(api: Api) -> None:
    done = await inventory(api.server.port, "stock", "ls")

    assert done.returncode == 0, done.stderr
    assert f"connecting to gRPC 127.0.0.1:{api.server.port}" in done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "┃" in line)  # rich's heavy head
    body = [line for line in lines if line.startswith("│")]
    assert all(word in header for word in ("product", "warehouse", "available", "sellable"))
    assert len(body) == len(demo_stocks(api.container.settings.default_warehouse_id))
    east = next(
        line for line in body if "prod-123" in line and "var-456" in line and "wh-east" in line
    )
    assert [cell.strip() for cell in east.split("│")][4:7] == ["50", "0", "50"]
    assert f"{len(body)} rows" in done.stdout


async def test_stock_ls_json_is_one_object_per_row(api: Api) -> None:
    default = api.container.settings.default_warehouse_id
    lines = (await inventory(api.server.port, "stock", "ls", "--json")).json_lines()

    assert {(r["product_id"], r["variant_id"], r["warehouse_id"], r["total"]) for r in lines} == {
        (s.product_id, s.variant_id, s.warehouse_id, s.quantity) for s in demo_stocks(default)
    }
    first = lines[0]
    assert isinstance(first["available"], int) and isinstance(first["version"], int)
    assert first["reorder_point"] is None  # unset, told apart from 0
    ordered = [(r["product_id"], r["variant_id"] or "", r["warehouse_id"]) for r in lines]
    assert ordered == sorted(ordered)


async def test_stock_ls_filters_by_warehouse_and_prefix(api: Api) -> None:
    east = await inventory(api.server.port, "stock", "ls", "--warehouse", "wh-east", "--json")
    assert {r["warehouse_id"] for r in east.json_lines()} == {"wh-east"}
    assert len(east.json_lines()) == 3

    prefixed = await inventory(api.server.port, "stock", "ls", "--prefix", "prod-4", "--json")
    assert {r["product_id"] for r in prefixed.json_lines()} == {"prod-456"}


async def test_stock_ls_reads_every_page(api: Api) -> None:
    extra = PAGE_SIZE + 50
    async with api.container.db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stocks (id, product_id, variant_id, warehouse_id, available, "
                "reserved, total, version) SELECT gen_random_uuid(), "
                "'bulk-' || lpad(n::text, 5, '0'), NULL, :warehouse, n, 0, n, 1 "
                "FROM generate_series(1, :count) AS n"
            ),
            {"warehouse": api.container.settings.default_warehouse_id, "count": extra},
        )

    lines = (
        await inventory(api.server.port, "stock", "ls", "--prefix", "bulk-", "--json")
    ).json_lines()

    assert [r["product_id"] for r in lines] == [f"bulk-{n:05d}" for n in range(1, extra + 1)]


# -- inventory movements --


async def reserve_and_commit(api: Api, order_id: str) -> None:
    await api.stub.ReserveStock(reserve_request(order_id, ("prod-123", "var-456", 2)))
    await api.stub.CommitReservation(pb.CommitReservationRequest(order_id=order_id))


async def test_movements_json_oldest_first_with_the_order(api: Api) -> None:
    await reserve_and_commit(api, "order-cli-1")

    lines = (
        await inventory(api.server.port, "movements", "prod-123:var-456", "--json")
    ).json_lines()

    assert {(r["product_id"], r["variant_id"]) for r in lines} == {("prod-123", "var-456")}
    assert [r["id"] for r in lines] == sorted(r["id"] for r in lines)
    operations = [(r["operation"], r["order_id"]) for r in lines]
    assert operations[-2:] == [("RESERVE", "order-cli-1"), ("COMMIT", "order-cli-1")]
    assert [r["operation"] for r in lines[:3]] == ["SET", "SET", "SET"]  # the seed, per warehouse
    assert all(datetime.fromisoformat(r["created_at"]).tzinfo is not None for r in lines)


async def test_movements_since_leaves_out_what_came_before(api: Api) -> None:
    async with api.container.db.connect() as conn:
        since: datetime = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
    await reserve_and_commit(api, "order-cli-2")

    later = await inventory(
        api.server.port, "movements", "prod-123:var-456", "--since", since.isoformat(), "--json"
    )
    assert [r["operation"] for r in later.json_lines()] == ["RESERVE", "COMMIT"]

    recent = await inventory(
        api.server.port, "movements", "prod-123:var-456", "--since", "1h", "--json"
    )
    assert len(recent.json_lines()) == 5  # the three seed rows of today, and the order


async def test_movements_prints_a_table(api: Api) -> None:
    await reserve_and_commit(api, "order-cli-3")

    done = await inventory(api.server.port, "movements", "prod-123:var-456")

    assert done.returncode == 0, done.stderr
    assert "movements of prod-123:var-456" in done.stdout
    reserve = next(line for line in done.stdout.splitlines() if "RESERVE" in line)
    assert "order-cli-3" in reserve and "wh-east" in reserve
    assert "5 rows" in done.stdout


async def test_movements_reads_every_page(api: Api) -> None:
    extra = PAGE_SIZE + 50
    async with api.container.db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, "
                "operation, quantity, available_after, reserved_after, total_after, reason, "
                "actor) SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, 'ADD', 1, "
                "s.available + n, 0, s.total + n, 'bulk', 'test' "
                "FROM stocks s, generate_series(1, :count) AS n WHERE s.product_id = 'prod-789'"
            ),
            {"count": extra},
        )

    lines = (await inventory(api.server.port, "movements", "prod-789", "--json")).json_lines()

    assert len(lines) == extra + 1  # and the seed's SET
    assert len({r["id"] for r in lines}) == len(lines)
    assert [r["id"] for r in lines] == sorted(r["id"] for r in lines)


# -- failures --


async def test_no_server_is_one_line_and_exit_2() -> None:
    port = free_port()
    for args in (("stock", "ls"), ("movements", "prod-123")):
        done = await inventory(port, *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"inventory {args[0]}: the gRPC API at 127.0.0.1:{port}"), last
        assert "is the service running?" in last
        assert done.stdout == ""


async def test_a_bad_since_is_a_usage_error() -> None:
    done = await inventory(free_port(), "movements", "prod-123", "--since", "yesterday-ish")
    assert done.returncode == 2
    assert "--since" in done.stderr and "ISO 8601" in done.stderr


# -- the pieces, without a server --


def test_pages_follows_the_tokens_to_the_last_page() -> None:
    answers = {
        "": pb.ListStockResponse(stock=[pb.StockLevel(product_id="a")], next_page_token="t1"),
        "t1": pb.ListStockResponse(stock=[pb.StockLevel(product_id="b")], next_page_token="t2"),
        "t2": pb.ListStockResponse(stock=[pb.StockLevel(product_id="c")]),
    }
    asked: list[tuple[str, int]] = []

    def call(request: pb.ListStockRequest, timeout: float) -> pb.ListStockResponse:
        asked.append((request.page_token, request.page_size))
        return answers[request.page_token]

    found = [level.product_id for level in pages(call, pb.ListStockRequest(), "stock")]

    assert found == ["a", "b", "c"]
    assert asked == [("", PAGE_SIZE), ("t1", PAGE_SIZE), ("t2", PAGE_SIZE)]


def test_instants_iso_or_an_age() -> None:
    assert instant("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert instant("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert instant("2026-01-02") == datetime(2026, 1, 2, tzinfo=UTC)
    before = datetime.now(UTC)
    two_hours_ago = instant("2h")
    assert before - timedelta(hours=2) <= two_hours_ago <= datetime.now(UTC) - timedelta(hours=2)
    assert instant("15m") > instant("1d") > instant("1w")


def test_the_target_comes_from_the_command_line_the_environment_or_make_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("INVENTORY_GRPC_HOST", "INVENTORY_GRPC_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INVENTORY_DEV_DATA_DIR", str(tmp_path / "dev"))
    assert grpc_target("stock") == "127.0.0.1:4004"  # nothing runs: the default port

    lock = InstanceLock(tmp_path / "dev")
    lock.acquire()
    try:
        lock.record({"grpc": 24004}, {})
        assert grpc_target("stock") == "127.0.0.1:24004"  # the live `make run`
        monkeypatch.setenv("INVENTORY_GRPC_PORT", "5005")
        assert grpc_target("stock") == "127.0.0.1:5005"  # 0.0.0.0 binds, 127.0.0.1 connects
        assert grpc_target("stock", "api.example:443") == "api.example:443"
    finally:
        lock.release()
    said = capsys.readouterr().err.splitlines()
    assert said[1] == "inventory stock: connecting to gRPC 127.0.0.1:24004 " + (
        f"(the `inventory dev` running as pid {os.getpid()})"
    )
    assert said[3].endswith("(command line)")
