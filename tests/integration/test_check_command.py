"""`inventory check` exits 0 on a healthy ledger and 1, naming the problem, on a damaged one."""

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from service.domain import validation as v

pytestmark = pytest.mark.stack


def run_check(settings):
    env = {**os.environ, "INVENTORY_DATABASE_URL": settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_check_command(container, settings):
    await container.engine.update_stock(
        v.update_stock(
            product_id="p",
            variant_id=None,
            warehouse_id=None,
            operation="ADD",
            quantity=5,
            reason="",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )
    healthy = run_check(settings)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "all invariants hold" in healthy.stdout
    async with container.db.begin() as conn:
        await conn.execute(text("UPDATE stocks SET available = 9, total = 9"))
    damaged = run_check(settings)
    assert damaged.returncode == 1
    assert "movements replay" in damaged.stdout
