"""Commands that cannot run say why in one line and exit 2, with no traceback.

`inventory serve` with its gRPC or HTTP port taken, PostgreSQL or the broker unreachable;
`inventory loadgen` with a wrong --bootstrap changes no stock and leaves no unclosed producer;
`inventory check` on a database that does not exist.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Role, Settings
from service.devtools.ports import free_port
from tests.dev_process import inventory_command

pytestmark = pytest.mark.stack

COMMAND_TIMEOUT_S = 120


def run(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **settings.as_env(), "INVENTORY_LOG_FORMAT": "text", **env}
    return subprocess.run(
        [*inventory_command(), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def could_not_run(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The last line on stderr, which must be the only word of the command on the failure."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"inventory {command}: "), result.stderr
    return last


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture
def api(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"role": Role.API, "grpc_host": "127.0.0.1", "grpc_port": 0, "http_port": 0}
    )


def test_serve_with_the_grpc_port_taken(api: Settings, taken_port: int) -> None:
    line = could_not_run(run(api, "serve", INVENTORY_GRPC_PORT=str(taken_port)), "serve")
    assert f"gRPC port 127.0.0.1:{taken_port} is taken" in line
    assert "INVENTORY_GRPC_PORT" in line


def test_serve_with_the_http_port_taken(api: Settings, taken_port: int) -> None:
    env = {"INVENTORY_HTTP_HOST": "127.0.0.1", "INVENTORY_HTTP_PORT": str(taken_port)}
    line = could_not_run(run(api, "serve", **env), "serve")
    assert f"HTTP port 127.0.0.1:{taken_port} is taken" in line


def test_serve_with_postgresql_unreachable(api: Settings) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/inventory"
    line = could_not_run(run(api, "serve", INVENTORY_DATABASE_URL=url), "serve")
    assert "cannot reach PostgreSQL at postgresql://postgres@127.0.0.1:" in line
    assert "INVENTORY_DATABASE_URL" in line


def test_serve_with_the_broker_unreachable(api: Settings) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"INVENTORY_ROLE": "worker", "INVENTORY_KAFKA_BOOTSTRAP": bootstrap}
    line = could_not_run(run(api, "serve", **env), "serve")
    assert f"cannot reach Kafka at {bootstrap}" in line


async def test_loadgen_with_a_wrong_bootstrap_changes_no_stock(
    settings: Settings, db_engine: AsyncEngine
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = run(
        settings, "loadgen", "--count", "10", "--prefix", "WRONG", "--bootstrap", bootstrap
    )

    line = could_not_run(result, "loadgen")
    assert f"cannot reach Kafka at {bootstrap}" in line
    assert "Unclosed" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr  # where, then why
    async with db_engine.connect() as conn:
        seeded = await conn.scalar(
            text("SELECT count(*) FROM stocks WHERE product_id LIKE 'WRONG%'")
        )
    assert seeded == 0


def test_loadgen_with_postgresql_unreachable(settings: Settings) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/inventory"
    result = run(settings, "loadgen", "--count", "10", INVENTORY_DATABASE_URL=url)
    assert "cannot reach PostgreSQL" in could_not_run(result, "loadgen")


def test_check_on_a_database_that_does_not_exist(settings: Settings) -> None:
    url = settings.database_url.rsplit("/", 1)[0] + "/no_such_database"
    line = could_not_run(run(settings, "check", INVENTORY_DATABASE_URL=url), "check")
    assert 'refused: database "no_such_database" does not exist' in line
