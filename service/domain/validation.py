"""Validation of raw input (decoded JSON or proto fields) into commands, with precise errors.

Input arrives untyped: a JSON number may be a float or a bool, a string may be empty or huge.
Every check names the field it failed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.commands import (
    Commit,
    Extend,
    Release,
    Reserve,
    SetStockPolicy,
    Source,
    UpdateStock,
)
from service.domain.errors import InvalidArgument
from service.domain.values import Item, Sku, StockOperation


@dataclass(frozen=True, slots=True)
class Limits:
    max_items_per_order: int = 100
    max_quantity_per_item: int = 100_000
    max_id_length: int = 128
    max_reason_length: int = 512
    max_message_bytes: int = 1_048_576
    min_ttl_seconds: int = 1
    default_ttl_seconds: int = 900
    max_ttl_seconds: int = 86_400


def require_id(value: Any, field: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    if not value or not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > limits.max_id_length:
        raise InvalidArgument(field, f"longer than {limits.max_id_length} characters")
    if not value.isprintable():
        raise InvalidArgument(field, "contains control characters")
    return value


def optional_id(value: Any, field: str, limits: Limits) -> str | None:
    """Absent, null and "" (the proto default) all mean 'not given'."""
    if value is None or value == "":
        return None
    return require_id(value, field, limits)


def require_int(value: Any, field: str, *, low: int, high: int) -> int:
    # bool is an int in Python, and JSON 2.0 is not a quantity
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}, got {value}")
    return value


def optional_text(value: Any, field: str, limits: Limits) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    if len(value) > limits.max_reason_length:
        raise InvalidArgument(field, f"longer than {limits.max_reason_length} characters")
    # free text may hold newlines and tabs, but PostgreSQL text cannot hold NUL, and a lone
    # surrogate (possible in a JSON string) has no UTF-8 encoding
    if "\x00" in value:
        raise InvalidArgument(field, "contains a NUL character")
    if not value.isascii() and _has_surrogate(value):
        raise InvalidArgument(field, "contains a lone surrogate (not Unicode text)")
    return value


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def ttl(value: Any, limits: Limits) -> int:
    """A TTL out of bounds is an error, never clamped; absent or 0 means the default."""
    if value is None or (value == 0 and not isinstance(value, bool)):
        return limits.default_ttl_seconds
    return require_int(
        value, "ttl_seconds", low=limits.min_ttl_seconds, high=limits.max_ttl_seconds
    )


def parse_item(raw: Any, index: int, limits: Limits) -> Item:
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"items[{index}]", "must be an object")
    # fields are checked under their own names: the item's position goes into the name only
    # on failure, which keeps string building off the path of every valid item
    get = raw.get
    try:
        return Item(
            Sku(
                require_id(get("product_id"), "product_id", limits),
                optional_id(get("variant_id"), "variant_id", limits),
            ),
            require_int(get("quantity"), "quantity", low=1, high=limits.max_quantity_per_item),
            optional_id(get("warehouse_id"), "warehouse_id", limits),
        )
    except InvalidArgument as error:
        raise error.within(f"items[{index}]") from None


def merge_repeated(items: Iterable[Item], limits: Limits) -> tuple[Item, ...]:
    """Sum lines that name the same SKU in the same warehouse (first occurrence keeps its place)."""
    items = tuple(items)
    merged: dict[tuple[Sku, str | None], int] = {}
    for item in items:
        key = (item.sku, item.warehouse_id)
        merged[key] = merged.get(key, 0) + item.quantity
    for (sku, _), quantity in merged.items():
        if quantity > limits.max_quantity_per_item:
            raise InvalidArgument(
                "items",
                f"{sku.key} sums to {quantity}, over the limit of {limits.max_quantity_per_item}",
            )
    if len(merged) == len(items):
        return items  # nothing repeated: the lines as given
    return tuple(Item(sku, quantity, warehouse) for (sku, warehouse), quantity in merged.items())


def optional_bool(value: Any, field: str) -> bool:
    """Absent and null mean False; anything but a boolean (1, "true") is refused."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(field, "must be true or false")
    return value


def reserve(
    order_id: Any,
    items: Any,
    ttl_seconds: Any,
    limits: Limits,
    *,
    source: Source = Source.API,
    event_id: str | None = None,
    allow_partial: Any = False,
) -> Reserve:
    order = require_id(order_id, "order_id", limits)
    if not isinstance(items, (list, tuple)):
        raise InvalidArgument("items", "must be a list")
    if not items:
        raise InvalidArgument("items", "must not be empty")
    if len(items) > limits.max_items_per_order:
        raise InvalidArgument(
            "items", f"{len(items)} items, over the limit of {limits.max_items_per_order}"
        )
    parsed = [parse_item(raw, i, limits) for i, raw in enumerate(items)]
    return Reserve(
        order_id=order,
        items=merge_repeated(parsed, limits),
        ttl_seconds=ttl(ttl_seconds, limits),
        source=source,
        event_id=event_id,
        allow_partial=optional_bool(allow_partial, "allow_partial"),
    )


def extend(
    order_id: Any,
    ttl_seconds: Any,
    limits: Limits,
    *,
    source: Source = Source.API,
    event_id: str | None = None,
) -> Extend:
    """The hold runs until now + ``ttl_seconds``, within the bounds of a reservation's TTL.

    Unlike a reservation's, the TTL is required: absent or null is ``InvalidArgument``
    ("required"), and 0 (the proto default) is out of bounds like any other value, never
    clamped; each error names ``ttl_seconds``.
    """
    order = require_id(order_id, "order_id", limits)
    if ttl_seconds is None:
        raise InvalidArgument("ttl_seconds", "required")
    return Extend(
        order,
        ttl_seconds=require_int(
            ttl_seconds, "ttl_seconds", low=limits.min_ttl_seconds, high=limits.max_ttl_seconds
        ),
        source=source,
        event_id=event_id,
    )


def commit(
    order_id: Any, limits: Limits, *, source: Source = Source.API, event_id: str | None = None
) -> Commit:
    return Commit(require_id(order_id, "order_id", limits), source=source, event_id=event_id)


def release(
    order_id: Any,
    reason: Any,
    limits: Limits,
    *,
    source: Source = Source.API,
    event_id: str | None = None,
) -> Release:
    return Release(
        require_id(order_id, "order_id", limits),
        reason=optional_text(reason, "reason", limits),
        source=source,
        event_id=event_id,
    )


def update_stock(
    *,
    product_id: Any,
    variant_id: Any,
    warehouse_id: Any,
    operation: Any,
    quantity: Any,
    reason: Any,
    limits: Limits,
    default_warehouse_id: str,
    expected_version: Any = None,
    idempotency_key: Any = None,
    actor: str = "admin",
) -> UpdateStock:
    try:
        op = StockOperation(operation)
    except ValueError:
        raise InvalidArgument("operation", "must be ADD, SUBTRACT or SET") from None
    low = 0 if op is StockOperation.SET else 1
    version = _expected_version(expected_version)
    return UpdateStock(
        sku=Sku(
            require_id(product_id, "product_id", limits),
            optional_id(variant_id, "variant_id", limits),
        ),
        warehouse_id=optional_id(warehouse_id, "warehouse_id", limits) or default_warehouse_id,
        operation=op,
        quantity=require_int(quantity, "quantity", low=low, high=2**53),
        reason=optional_text(reason, "reason", limits) or "",
        actor=actor,
        expected_version=version,
        idempotency_key=optional_id(idempotency_key, "idempotency_key", limits),
    )


def set_stock_policy(
    *,
    product_id: Any,
    variant_id: Any,
    warehouse_id: Any,
    safety_stock: Any = 0,
    reorder_point: Any = None,
    backorder_limit: Any = 0,
    reason: Any = None,
    limits: Limits,
    default_warehouse_id: str,
    expected_version: Any = None,
    idempotency_key: Any = None,
    actor: str = "admin",
) -> SetStockPolicy:
    """The command replacing a row's policy. ``safety_stock`` and ``backorder_limit`` absent
    (None) are 0, ``reorder_point`` None is no alert; ``InvalidArgument`` naming the field for
    a non-integer or negative value or a safety stock over ``limits.max_quantity_per_item``.

    Pure: what depends on the row (a backorder limit below its backordered units) is the
    engine's to refuse, with FailedPrecondition.
    """
    # policies imports this module (Limits, require_int): imported here to break the cycle
    from service.domain.policies import validate_policy

    target = Sku(
        require_id(product_id, "product_id", limits),
        optional_id(variant_id, "variant_id", limits),
    )
    warehouse = optional_id(warehouse_id, "warehouse_id", limits) or default_warehouse_id
    # available=0: a row with nothing backordered, so only the input itself is judged
    policy = validate_policy(
        safety_stock=0 if safety_stock is None else safety_stock,
        reorder_point=reorder_point,
        backorder_limit=0 if backorder_limit is None else backorder_limit,
        available=0,
        limits=limits,
    )
    return SetStockPolicy(
        sku=target,
        warehouse_id=warehouse,
        policy=policy,
        reason=optional_text(reason, "reason", limits) or "",
        actor=actor,
        expected_version=_expected_version(expected_version),
        idempotency_key=optional_id(idempotency_key, "idempotency_key", limits),
    )


def _expected_version(value: Any) -> int | None:
    """A compare-and-set version, or None when not given."""
    if value is None:
        return None
    return require_int(value, "expected_version", low=0, high=2**62)


def sku(product_id: Any, variant_id: Any, limits: Limits) -> Sku:
    return Sku(
        require_id(product_id, "product_id", limits), optional_id(variant_id, "variant_id", limits)
    )


def check_quantity(quantity: Any, limits: Limits) -> int:
    return require_int(quantity, "quantity", low=1, high=limits.max_quantity_per_item)


# warehouses.name is varchar(256) (db/schema.py)
MAX_WAREHOUSE_NAME_LENGTH = 256
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True, slots=True)
class WarehouseRecord:
    """A warehouse as UpsertWarehouse writes it and ListWarehouses reads it."""

    warehouse_id: str
    name: str
    priority: int  # allocation takes from lower priorities first
    active: bool  # False: no new reservation there; the existing ones stay valid


def upsert_warehouse(
    *, warehouse_id: Any, name: Any, priority: Any, active: Any, limits: Limits
) -> WarehouseRecord:
    """The warehouse to create or change: ``warehouse_id`` an id like any other, ``name``
    non-empty text of at most ``MAX_WAREHOUSE_NAME_LENGTH`` characters without control
    characters, ``priority`` an int32 >= 0, ``active`` a boolean; ``InvalidArgument`` names the
    field (checked in that order)."""
    warehouse = require_id(warehouse_id, "warehouse_id", limits)
    if not isinstance(name, str):
        raise InvalidArgument("name", "must be a string")
    if not name.strip():
        raise InvalidArgument("name", "must not be empty")
    if len(name) > MAX_WAREHOUSE_NAME_LENGTH:
        raise InvalidArgument("name", f"longer than {MAX_WAREHOUSE_NAME_LENGTH} characters")
    # isprintable() also refuses NUL (PostgreSQL text cannot hold it), newlines and lone
    # surrogates (possible in a JSON string, with no UTF-8 encoding)
    if not name.isprintable():
        raise InvalidArgument("name", "contains control characters")
    rank = require_int(priority, "priority", low=0, high=MAX_INT32)
    if not isinstance(active, bool):
        raise InvalidArgument("active", "must be true or false")
    return WarehouseRecord(warehouse, name, rank, active)
