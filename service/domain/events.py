"""The wire format of the events the engine produces, built and parsed back in one place.

``stock-changed`` and ``inventory-reservations`` (docs/events/README.md, the JSON Schemas
beside it). The builders make the payloads the engine writes to its outbox; the contracts are
public, so their keys, the keys' order and the values go out exactly as built here. The
parsers read those payloads for the service's own consumers (the cache warmer, the expiry
schedule): they check what those consumers use, refuse a body they cannot use with
``MalformedEvent`` and ignore everything else, so an event never fails over a field no one
reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from service.domain.policies import Alert
from service.domain.results import LineOutcome, ReservationLine
from service.domain.snapshot import StockRow
from service.domain.values import DEFAULT_POLICY, ResultStatus, Shortage, Sku, StockPolicy

EpochSeconds: TypeAlias = float


class MalformedEvent(ValueError):
    """A body that is not a usable event of its topic; the message says what is wrong."""


# --- stock-changed -------------------------------------------------------------------------


def stock_changed_payload(
    row: StockRow, cause: str, order_id: str | None, at: datetime
) -> dict[str, Any]:
    """The ``stock-changed`` payload of ``row``'s current state.

    ``cause`` is the row's last operation, ``order_id`` the order behind it (if any), ``at``
    when the engine decided the batch.
    """
    return {
        "product_id": row.sku.product_id,
        "variant_id": row.sku.variant_id,
        "warehouse_id": row.warehouse_id,
        "available": row.levels.available,
        "reserved": row.levels.reserved,
        "total": row.levels.total,
        "version": row.version,
        "sellable": row.policy.sellable(row.levels.available),
        "backordered": row.backordered,
        "safety_stock": row.policy.safety_stock,
        "reorder_point": row.policy.reorder_point,
        "backorder_limit": row.policy.backorder_limit,
        "cause": cause,
        "order_id": order_id,
        "at": at.isoformat(),
    }


@dataclass(frozen=True, slots=True)
class StockChanged:
    """A ``stock-changed`` event: the absolute levels of one stock row at a version."""

    product_id: str
    variant_id: str | None
    warehouse_id: str
    available: int
    reserved: int
    total: int
    version: int
    # Outside the contract (the engine never sends it), but a body that carries one keeps it.
    stock_id: str
    # Only times the event's propagation, so a body without an ``at`` string is still usable.
    at: datetime | None
    # The policy and what follows from it. A body from before policies has none: the defaults.
    policy: StockPolicy = DEFAULT_POLICY
    backordered: int = 0

    @property
    def sku(self) -> Sku:
        return Sku(self.product_id, self.variant_id)

    @property
    def sellable(self) -> int:
        return self.policy.sellable(self.available)


def parse_stock_changed(body: Mapping[str, Any]) -> StockChanged:
    """A decoded ``stock-changed`` body; ``MalformedEvent`` if it cannot be applied.

    Requires non-empty strings ``product_id`` and ``warehouse_id``, integers ``available``
    and ``total`` (below zero on a backordered row), non-negative integers ``reserved`` and
    ``version``, and an ISO 8601 ``at`` if ``at`` is a string. A falsy ``variant_id`` ("" as
    well as null) means no variant. The policy fields are optional (non-negative integers,
    ``reorder_point`` may be null); ``sellable`` is derived, not read; ``cause`` and
    ``order_id`` are not read.
    """
    if not isinstance(body, Mapping):
        raise MalformedEvent(f"stock-changed: not a JSON object: {body!r}")
    variant_id = body.get("variant_id") or None
    stock_id = body.get("stock_id")
    return StockChanged(
        product_id=_text(body, "product_id"),
        variant_id=None if variant_id is None else _text(body, "variant_id"),
        warehouse_id=_text(body, "warehouse_id"),
        available=_integer(body, "available"),
        reserved=_count(body, "reserved"),
        total=_integer(body, "total"),
        version=_count(body, "version"),
        stock_id=_text(body, "stock_id") if stock_id else "",
        at=_stock_changed_at(body.get("at")),
        policy=StockPolicy(
            safety_stock=_count(body, "safety_stock") if "safety_stock" in body else 0,
            reorder_point=(
                None if body.get("reorder_point") is None else _count(body, "reorder_point")
            ),
            backorder_limit=_count(body, "backorder_limit") if "backorder_limit" in body else 0,
        ),
        backordered=_count(body, "backordered") if "backordered" in body else 0,
    )


def _text(body: Mapping[str, Any], field: str) -> str:
    value = _field(body, field)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"stock-changed: {field} must be a non-empty string, got {value!r}")
    return value


def _count(body: Mapping[str, Any], field: str) -> int:
    value = _field(body, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(
            f"stock-changed: {field} must be a non-negative integer, got {value!r}"
        )
    return value


def _integer(body: Mapping[str, Any], field: str) -> int:
    value = _field(body, field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"stock-changed: {field} must be an integer, got {value!r}")
    return value


def _field(body: Mapping[str, Any], field: str) -> Any:
    try:
        return body[field]
    except KeyError:
        raise MalformedEvent(f"stock-changed: no {field}") from None


def _stock_changed_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(f"stock-changed: at is not ISO 8601: {value!r}") from None


# --- stock-alerts ---------------------------------------------------------------------------


def stock_alert_payload(alert: Alert, at: datetime) -> dict[str, Any]:
    """A ``stock-alerts`` message (key: the SKU). ``warehouse_id`` null: the SKU summed over
    its active warehouses; otherwise one stock row."""
    return {
        "alert": alert.kind.value,
        "product_id": alert.sku.product_id,
        "variant_id": alert.sku.variant_id,
        "warehouse_id": alert.warehouse_id,
        "sellable": alert.sellable,
        "at": at.isoformat(),
    }


# --- inventory-reservations ----------------------------------------------------------------


def reservation_payload(
    order_id: str,
    status: ResultStatus,
    lines: Sequence[ReservationLine],
    *,
    at: datetime,
    reason: str | None = None,
    shortages: Sequence[Shortage] = (),
    expires_at: datetime | None = None,
    iso: Callable[[datetime], str] = datetime.isoformat,
    outcomes: Sequence[LineOutcome] = (),
    restock: bool | None = None,
) -> dict[str, Any]:
    """The ``inventory-reservations`` payload of an order's new ``status``.

    ``lines`` are the reservations the status concerns (for a rejection, the requested items:
    lines without a reservation id). ``reason``, ``shortages`` and ``expires_at`` are left out
    when empty. ``iso`` formats the times: a planner passes its batch's ``IsoFormats``, since
    most events of a batch share their times.
    """
    payload: dict[str, Any] = {
        "order_id": order_id,
        "status": status.value,
        "items": [_item_payload(line) for line in lines],
        "at": iso(at),
    }
    if reason:
        payload["reason"] = reason
    if shortages:
        payload["shortages"] = [_shortage_payload(shortage) for shortage in shortages]
    if expires_at is not None:
        payload["expires_at"] = iso(expires_at)
    if outcomes:  # a partial reservation: what each requested line got
        payload["lines"] = [_outcome_payload(outcome) for outcome in outcomes]
    if restock is not None:  # RETURNED: the units in ``items`` came back as stock, or damaged
        payload["restock"] = restock
    return payload


def _outcome_payload(outcome: LineOutcome) -> dict[str, Any]:
    return {
        "product_id": outcome.sku.product_id,
        "variant_id": outcome.sku.variant_id,
        "warehouse_id": outcome.warehouse_id,
        "requested": outcome.requested,
        "reserved": outcome.reserved,
        "short": outcome.short,
    }


def _item_payload(line: ReservationLine) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "product_id": line.sku.product_id,
        "variant_id": line.sku.variant_id,
        "warehouse_id": line.warehouse_id or None,
        "quantity": line.quantity,
    }
    if line.reservation_id:
        payload["reservation_id"] = line.reservation_id
    if line.backordered:  # absent means none, so payloads without backorders stay as they were
        payload["backordered"] = line.backordered
    return payload


def _shortage_payload(shortage: Shortage) -> dict[str, Any]:
    return {
        "product_id": shortage.sku.product_id,
        "variant_id": shortage.sku.variant_id,
        "warehouse_id": shortage.warehouse_id,
        "requested": shortage.requested,
        "available": shortage.available,
    }


@dataclass(frozen=True, slots=True)
class ReservationChanged:
    """An ``inventory-reservations`` event, as far as the expiry schedule reads it."""

    order_id: str
    # As sent, even one this version does not know: RESERVED and EXTENDED set the deadline,
    # BACKORDER_FILLED and NOT_EXTENDED leave it, any other status ends the hold.
    status: str
    # RESERVED and EXTENDED only: when the hold lapses. None for every other status, whatever
    # the body says.
    expires_at: EpochSeconds | None

    @property
    def changes_hold(self) -> bool:
        """False for a report about an order that changes nothing of its hold: a
        BACKORDER_FILLED order is still RESERVED (or COMMITTED), with the same deadline; a
        NOT_EXTENDED or RETURN_REFUSED order is as it was (an extension or a return it
        refused), a RETURNED one is still COMMITTED."""
        return self.status not in _KEEPS_HOLD


def parse_reservation_changed(
    body: Mapping[str, Any], *, key: str | None = None
) -> ReservationChanged:
    """A decoded ``inventory-reservations`` body; ``MalformedEvent`` if it cannot be used.

    ``key`` is the message's key (the order id), the order id when the body has no
    non-empty ``order_id`` string. ``status`` must be a string; a RESERVED or EXTENDED event
    needs an ``expires_at``: ISO 8601 (naive means UTC) or a number of epoch seconds.
    """
    if not isinstance(body, Mapping):
        raise MalformedEvent(f"inventory-reservations: not a JSON object: {body!r}")
    order_id = body.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        order_id = key
    if not order_id:
        raise MalformedEvent("inventory-reservations: no order_id")
    status = body.get("status")
    if not isinstance(status, str):
        raise MalformedEvent(f"inventory-reservations: {order_id} has no status")
    if status not in _SETS_DEADLINE:
        return ReservationChanged(order_id, status, None)
    expires_at = body.get("expires_at")
    if expires_at is None:
        raise MalformedEvent(f"inventory-reservations: {status} {order_id} has no expires_at")
    return ReservationChanged(order_id, status, _epoch_seconds(order_id, expires_at))


# statuses whose event carries the hold's (new) deadline, and reports that leave it alone
# (plain strings: a status is compared as sent)
_SETS_DEADLINE = frozenset({ResultStatus.RESERVED.value, ResultStatus.EXTENDED.value})
_KEEPS_HOLD = frozenset(
    {
        ResultStatus.BACKORDER_FILLED.value,
        ResultStatus.NOT_EXTENDED.value,
        # a refused return changes nothing; a return only ever concerns a COMMITTED order
        ResultStatus.RETURNED.value,
        ResultStatus.RETURN_REFUSED.value,
    }
)


def decode_reservation_changed(key: bytes | None, value: bytes | None) -> ReservationChanged:
    """A message of ``inventory-reservations`` as it comes off the topic (JSON bytes)."""
    try:
        body = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent("inventory-reservations: not JSON") from None
    if not isinstance(body, Mapping):
        raise MalformedEvent(f"inventory-reservations: not a JSON object: {body!r}")
    return parse_reservation_changed(body, key=key.decode("utf-8", "replace") if key else None)


def _epoch_seconds(order_id: str, value: Any) -> EpochSeconds:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedEvent(
            f"inventory-reservations: {order_id} expires_at must be a date-time, got {value!r}"
        )
    if not isinstance(value, str):
        return float(value)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(
            f"inventory-reservations: {order_id} expires_at is not ISO 8601: {value!r}"
        ) from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
