"""The live invariant check: a row damaged by hand counts within a round, and stops counting
once repaired; one worker checks at a time; a problem only the full pass sees keeps counting."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.domain import validation as v
from service.invariant_monitor import InvariantMonitor
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

ALERTS = Path(__file__).resolve().parents[2] / "deploy/prometheus/alerts.yml"
ROUNDS_WITHIN_S = 30  # a bound for a broken test, not a figure under test


def violations() -> float | None:
    return REGISTRY.get_sample_value("inventory_invariant_violations")


SIMPLE_RULE = re.compile(r"^max\((?P<metric>inventory_[a-z_]+)\) > (?P<threshold>[0-9.]+)$")


def alert_fires(name: str) -> bool:
    """Evaluate a rule of deploy/prometheus/alerts.yml of the form ``max(metric) > n`` (the
    ones this module's gauge feeds) against this process's metrics, as Prometheus would."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == name)
    match = SIMPLE_RULE.match(rule["expr"].strip())
    assert match, f"{name}: not a max(metric) > n rule: {rule['expr']}"
    value = REGISTRY.get_sample_value(match["metric"])
    return value is not None and value > float(match["threshold"])


@pytest.fixture
def fast(settings: Settings) -> Settings:
    # rounds back to back; a full pass only at the start, so the bounded passes are under test
    return settings.model_copy(
        update={"invariant_check_interval_s": 0.05, "invariant_full_check_interval_s": 3600}
    )


@pytest.fixture
async def monitor(fast: Settings) -> AsyncIterator[InvariantMonitor]:
    running = InvariantMonitor(fast)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def rounds_later(monitor: InvariantMonitor, rounds: int = 2) -> None:
    """Until ``rounds`` more rounds ended: the second began after anything committed now."""
    wanted = monitor.rounds + rounds
    await wait_for(
        lambda: monitor.rounds >= wanted,
        within_s=ROUNDS_WITHIN_S,
        what=f"{wanted} rounds",
        every_s=0.01,
        diagnose=lambda: f"{monitor.rounds} rounds",
    )


async def add_stock(container, product_id: str, quantity: int) -> None:
    await container.engine.update_stock(
        v.update_stock(
            product_id=product_id,
            variant_id=None,
            warehouse_id=None,
            operation="ADD",
            quantity=quantity,
            reason="",
            limits=container.limits,
            default_warehouse_id="default",
        )
    )


async def execute(db: AsyncEngine, sql: str) -> None:
    async with db.begin() as conn:
        await conn.execute(text(sql))


async def test_a_row_damaged_by_hand_counts_until_it_is_repaired(
    container, db_engine: AsyncEngine, monitor: InvariantMonitor
) -> None:
    await add_stock(container, "p-live", 5)
    await rounds_later(monitor)
    assert violations() == 0
    full_passes = monitor.rounds

    # the row still adds up (a CHECK constraint sees to that), but its movements do not
    await execute(
        db_engine,
        "UPDATE stocks SET available = available + 1, total = total + 1 "
        "WHERE product_id = 'p-live'",
    )
    await rounds_later(monitor)
    assert violations() is not None and violations() >= 1
    assert alert_fires("InventoryInvariantViolation")
    assert any("movements replay" in str(p) for ps in monitor.problems.values() for p in ps)
    assert full_passes >= 1  # the first round was the full pass: these were bounded ones

    await execute(
        db_engine,
        "UPDATE stocks SET available = available - 1, total = total - 1 "
        "WHERE product_id = 'p-live'",
    )
    await rounds_later(monitor)
    assert violations() == 0
    assert not alert_fires("InventoryInvariantViolation")
    assert REGISTRY.get_sample_value("inventory_invariant_last_check_timestamp_seconds")


async def test_damage_only_the_full_pass_sees_keeps_counting(
    container, db_engine: AsyncEngine, fast: Settings
) -> None:
    await add_stock(container, "p-order", 5)
    await container.engine.reserve(
        v.reserve("o-live", [{"product_id": "p-order", "quantity": 2}], None, container.limits)
    )
    await execute(db_engine, "UPDATE orders SET state = 'RELEASED'")
    monitor = InvariantMonitor(fast)
    await monitor.start()
    try:
        await rounds_later(monitor, 3)  # the full pass, then bounded ones that skip orders
        assert violations() == 1
        assert "order o-live" in monitor.problems
    finally:
        await monitor.stop()


async def test_one_worker_checks_and_another_takes_over_when_it_goes(fast: Settings) -> None:
    first, second = InvariantMonitor(fast), InvariantMonitor(fast, standby_retry_s=0.05)
    await first.start()
    try:
        await rounds_later(first, 1)
        await second.start()
        await wait_for(
            lambda: second.lock_attempts >= 2,
            within_s=ROUNDS_WITHIN_S,
            what="the second monitor trying the lock twice",
            every_s=0.01,
        )
        assert first.is_checker and not second.is_checker and second.rounds == 0
    finally:
        await first.stop()
    try:
        await rounds_later(second, 1)
        assert second.is_checker
    finally:
        await second.stop()


async def test_the_backordered_units_gauge_follows_the_ledger(
    container, monitor: InvariantMonitor
) -> None:
    from service.domain.commands import SetStockPolicy
    from service.domain.values import Sku, StockPolicy

    await add_stock(container, "p-owed", 1)
    await container.engine.set_policy(
        SetStockPolicy(Sku("p-owed"), "default", StockPolicy(backorder_limit=10))
    )
    await container.engine.reserve(
        v.reserve("o-owed", [{"product_id": "p-owed", "quantity": 4}], None, container.limits)
    )
    await rounds_later(monitor)
    assert REGISTRY.get_sample_value("inventory_backordered_units") == 3
    await add_stock(container, "p-owed", 2)
    await rounds_later(monitor)
    assert REGISTRY.get_sample_value("inventory_backordered_units") == 1
    assert violations() == 0
