"""The engine's per-command counters: one labelled child per (kind, outcome), made once."""

from __future__ import annotations

import functools
from typing import Any

from service import metrics
from service.domain.commands import Command, SetStockPolicy, StockCommand, UpdateStock
from service.domain.errors import InventoryError
from service.domain.plan import Plan, Result
from service.domain.results import OrderResult


@functools.cache
def _commands_counter(kind: str, outcome: str) -> Any:
    return metrics.ENGINE_COMMANDS.labels(kind, outcome)


@functools.cache
def _duplicates_counter(kind: str) -> Any:
    return metrics.DUPLICATES.labels(kind)


@functools.cache
def _outcomes_counter(status: str) -> Any:
    return metrics.RESERVATION_OUTCOMES.labels(status)


def count_outcome(command: Command, result: Result) -> None:
    if isinstance(command, StockCommand):
        kind = (
            "update_stock"
            if isinstance(command, UpdateStock)
            else "set_stock_policy"
            if isinstance(command, SetStockPolicy)
            else "transfer_stock"
        )
    else:
        kind = command.kind.value
    if isinstance(result, InventoryError):
        _commands_counter(kind, result.status.lower()).inc()
        return
    _commands_counter(kind, "ok").inc()
    if isinstance(result, OrderResult):
        if result.duplicate:
            _duplicates_counter(kind).inc()
        if result.published is not None:
            _outcomes_counter(result.published.value).inc()


def count_policy_effects(plan: Plan) -> None:
    """After the commit: the alerts written and the orders whose backorders were filled."""
    for alert in plan.alerts:
        metrics.STOCK_ALERTS.labels(alert.kind.value).inc()
    filled = sum(
        1 for event in plan.reservation_events if event.payload["status"] == "BACKORDER_FILLED"
    )
    if filled:
        metrics.BACKORDERS_FILLED.inc(filled)
