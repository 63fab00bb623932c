"""`inventory serve --role api --processes 2` as a real process group on the test stack.

Both processes answer RPCs on the one gRPC port (a free one, picked by the supervisor), the
supervisor's /readiness waits for both, its /metrics adds up their counters, SIGTERM drains
them all and exits 0, and a process that dies stops the group with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.seed import seed_demo
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.config import Settings
from service.devtools.ports import free_port
from tests.http_client import get
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = 32  # own TCP connections: all 32 landing on one of 2 processes is a 2**-31 chance
WITHIN_S = 90.0  # a bound for a broken test, not a figure under test
NOT_ANSWERING = (OSError, aiohttp.ClientError, StopIteration)  # the group is still starting


@dataclass
class Group:
    process: subprocess.Popen[bytes]
    log: Path
    http_port: int

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def started(self) -> dict[str, Any]:
        """The supervisor's "processes started" line: pids, grpc_port, metrics_dir."""
        return next(line for line in self.lines() if line["msg"] == "processes started")

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the group exited ({self.process.returncode})")

    async def answer(self, probe: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Poll ``probe`` over HTTP until it answers, while the group runs; its answer."""
        return await wait_for(
            probe,
            within_s=WITHIN_S,
            what=what,
            every_s=0.2,
            alive=[self.check_running],
            ignoring=NOT_ANSWERING,
            diagnose=self.log.read_text,
        )


@pytest.fixture
async def seeded(settings: Settings) -> None:
    engine = create_async_engine(settings.database_url, poolclass=NullPool)
    try:
        await seed_demo(engine, settings.default_warehouse_id)
    finally:
        await engine.dispose()


@pytest.fixture
def group(settings: Settings, seeded: None, tmp_path: Path) -> Iterator[Group]:
    http_port = free_port()
    env = {
        **os.environ,
        **settings.as_env(),
        "INVENTORY_GRPC_HOST": "127.0.0.1",
        "INVENTORY_GRPC_PORT": "0",  # the supervisor picks one and shares it
        "INVENTORY_HTTP_HOST": "127.0.0.1",
        "INVENTORY_HTTP_PORT": str(http_port),
        "INVENTORY_LOG_FORMAT": "json",
        "INVENTORY_LOG_LEVEL": "INFO",
        "INVENTORY_SHUTDOWN_GRACE_S": "5",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--role", "api", "--processes", "2"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Group(process, log, http_port)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def ready_body(group: Group) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        status, body = await get(group.http_port, "/readiness")
        return dict(json.loads(body)) if status == 200 else None

    body: dict[str, Any] = await group.answer(probe, "200 from /readiness")
    return body


def rpc_counts(metric_families: Any) -> float:
    """inventory_rpc_requests_total{method="GetStock", code="OK"} in these families."""
    return sum(
        sample.value
        for family in metric_families
        for sample in family.samples
        if sample.name == "inventory_rpc_requests_total"
        and sample.labels == {"method": "GetStock", "code": "OK"}
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_processes_share_the_port_report_ready_add_up_and_drain(group: Group) -> None:
    body = await ready_body(group)
    started = group.started()
    pids = started["pids"]
    assert len(set(pids)) == 2 and started["grpc_port"] > 0
    assert [(p["pid"], p["state"]) for p in body["processes"]] == [(pid, "ready") for pid in pids]
    assert body["postgres"] == "up" and body["migrations"] == "at_head"
    ready_lines = [line for line in group.lines() if line["msg"] == "ready" and "child" in line]
    assert sorted((line["child"], line["pid"]) for line in ready_lines) == list(enumerate(pids))
    assert {line["event_loop"] for line in ready_lines} == {"uvloop"}  # forked, then uvloop
    status, health = await get(group.http_port, "/health")
    assert status == 200 and json.loads(health)["status"] == "alive"

    # each channel its own subchannel, so its own TCP connection: the kernel spreads them
    target = f"127.0.0.1:{started['grpc_port']}"
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(CHANNELS)]
    try:
        request = pb.GetStockRequest(product_id="prod-123", variant_id="var-456")
        answers = await asyncio.gather(
            *(pb_grpc.InventoryServiceStub(c).GetStock(request, timeout=30) for c in channels)
        )
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    assert all(answer.product_id == "prod-123" for answer in answers)

    # who served what: each process's own counter file in the group's metrics directory
    metrics_dir = Path(started["metrics_dir"])
    per_process = {
        pid: rpc_counts(MultiProcessCollector.merge([str(metrics_dir / f"counter_{pid}.db")]))
        for pid in pids
    }
    assert all(count > 0 for count in per_process.values()), per_process
    assert sum(per_process.values()) == CHANNELS

    # one scrape of the supervisor: the sum over the processes, gauges combined
    async def scraped() -> list[Any] | None:
        status, text = await get(group.http_port, "/metrics")
        families = list(text_string_to_metric_families(text))
        pool = [s.value for f in families for s in f.samples if s.name == "inventory_db_pool_size"]
        return families if status == 200 and pool == [20.0] else None  # 2 x db_pool_size 10

    families = await group.answer(scraped, "both processes' pool sizes in /metrics")
    assert rpc_counts(families) == CHANNELS
    ready_values = [s.value for f in families for s in f.samples if s.name == "inventory_ready"]
    assert ready_values == [1.0]
    assert not any("pid" in s.labels for f in families for s in f.samples)

    group.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(group.process.wait, 60) == 0
    assert not any(alive(pid) for pid in pids)
    assert not await asyncio.to_thread(metrics_dir.exists)
    messages = [line["msg"] for line in group.lines()]
    assert messages.count("stopped") == 3  # each process, then the supervisor


async def test_a_process_that_dies_stops_the_group_with_an_error(group: Group) -> None:
    await ready_body(group)
    first, second = group.started()["pids"]
    os.kill(first, signal.SIGKILL)
    assert await asyncio.to_thread(group.process.wait, 60) == 1
    assert not alive(second)
    failure = next(line for line in group.lines() if "unexpectedly" in line["msg"])
    assert (failure["pid"], failure["exit_code"]) == (first, -signal.SIGKILL)
    drained = [line for line in group.lines() if line["msg"] == "stopped" and "child" in line]
    assert [line["pid"] for line in drained] == [second]
