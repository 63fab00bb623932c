"""`inventory dev --stack-only` prints the exports a service started elsewhere needs.

A service given only those lines (and its own ports) gets ready on the stack; the output
names no gRPC or HTTP endpoint, since no service runs.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from pathlib import Path

import aiohttp
import pytest

from service.devtools.ports import StackPorts, free_port
from tests.dev_process import inventory_command, start_dev
from tests.e2e.worker_process import still_running, stop
from tests.http_client import get
from tests.waiting import wait_for

READY_WITHIN_S = 60


def exported(transcript: str) -> dict[str, str]:
    variables = {}
    for line in transcript.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            variables[name] = shlex.split(value)[0]
    return variables


def ready(process: subprocess.Popen[bytes], http_port: int, log: Path) -> None:
    asyncio.run(
        wait_for(
            lambda: _answers_ready(http_port),
            within_s=READY_WITHIN_S,
            what="the service ready",
            every_s=0.2,
            alive=[still_running(process)],
            ignoring=(OSError, aiohttp.ClientError),  # not listening yet
            diagnose=log.read_text,
        )
    )


async def _answers_ready(http_port: int) -> bool:
    return (await get(http_port, "/readiness"))[0] == 200


def test_a_service_given_only_the_printed_exports_gets_ready(tmp_path: Path) -> None:
    ports = StackPorts(postgres=free_port(), redis=free_port(), kafka=free_port())
    dev = start_dev(tmp_path / "dev", ports, "--stack-only")
    try:
        dev.wait_for("ready")
        variables = exported(dev.transcript)
        assert set(variables) == {
            "INVENTORY_DATABASE_URL",
            "INVENTORY_REDIS_URL",
            "INVENTORY_KAFKA_BOOTSTRAP",
            "INVENTORY_BROKER_SESSION_TIMEOUT_S",
            "INVENTORY_BROKER_HEARTBEAT_INTERVAL_S",
            "INVENTORY_BROKER_REBALANCE_TIMEOUT_S",
            "INVENTORY_KAFKA_FETCH_MAX_WAIT_MS",
        }
        for endpoint in ("gRPC", "HTTP", "admin token", "grpcurl"):
            assert endpoint not in dev.transcript

        env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_")}
        http_port = free_port()
        env.update(
            variables,
            INVENTORY_GRPC_HOST="127.0.0.1",
            INVENTORY_GRPC_PORT=str(free_port()),
            INVENTORY_HTTP_HOST="127.0.0.1",
            INVENTORY_HTTP_PORT=str(http_port),
            INVENTORY_LOG_FORMAT="text",
        )
        log = tmp_path / "service.log"
        with log.open("ab") as out:
            service = subprocess.Popen(
                [*inventory_command(), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            ready(service, http_port, log)
        finally:
            stop(service)
        assert service.returncode == 0, log.read_text()
        assert dev.interrupt() == 0
    finally:
        dev.kill()


@pytest.fixture(autouse=True)
def _no_pinned_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVENTORY_ADMIN_TOKEN_SHA256", raising=False)
