"""Validation of the stock operations' input (returns, transfers, bulk updates): the checks
every path shares, the RPCs and the ``order-returned`` topic alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.domain.commands import Return, Source, TransferStock
from service.domain.errors import InvalidArgument
from service.domain.validation import (
    Limits,
    merge_repeated,
    optional_id,
    optional_text,
    parse_item,
    require_id,
    require_int,
    sku,
)

# BulkUpdateStock: lines per call (an import sends its file in chunks of at most this)
MAX_BULK_LINES = 1_000


def return_stock(
    order_id: Any,
    items: Any,
    restock: Any,
    reason: Any,
    limits: Limits,
    *,
    source: Source = Source.API,
    event_id: str | None = None,
) -> Return:
    """``items`` absent or empty: everything the order committed and has not returned."""
    if not isinstance(restock, bool):
        raise InvalidArgument("restock", "required: true (back to stock) or false (damaged)")
    return Return(
        require_id(order_id, "order_id", limits),
        _return_items(items, limits),
        restock=restock,
        reason=optional_text(reason, "reason", limits),
        source=source,
        event_id=event_id,
    )


def _return_items(items: Any, limits: Limits) -> tuple[Any, ...]:
    if items is None:
        return ()
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidArgument("items", "must be a list")
    if len(items) > limits.max_items_per_order:
        raise InvalidArgument(
            "items", f"{len(items)} items, over the limit of {limits.max_items_per_order}"
        )
    parsed = [parse_item(raw, index, limits) for index, raw in enumerate(items)]
    for index, item in enumerate(parsed):
        if item.warehouse_id is not None:
            raise InvalidArgument(
                f"items[{index}].warehouse_id",
                "not accepted: units go back to the warehouses they left",
            )
    return merge_repeated(parsed, limits)


def transfer_stock(
    *,
    product_id: Any,
    variant_id: Any,
    from_warehouse: Any,
    to_warehouse: Any,
    quantity: Any,
    reason: Any,
    limits: Limits,
    idempotency_key: Any = None,
    actor: str = "admin",
) -> TransferStock:
    source = require_id(from_warehouse, "from_warehouse", limits)
    destination = require_id(to_warehouse, "to_warehouse", limits)
    if source == destination:
        raise InvalidArgument("to_warehouse", "must differ from from_warehouse")
    return TransferStock(
        sku=sku(product_id, variant_id, limits),
        from_warehouse=source,
        to_warehouse=destination,
        quantity=require_int(quantity, "quantity", low=1, high=2**53),
        reason=optional_text(reason, "reason", limits) or "",
        actor=actor,
        idempotency_key=optional_id(idempotency_key, "idempotency_key", limits),
    )


def bulk_size(lines: int) -> None:
    if lines == 0:
        raise InvalidArgument("lines", "must not be empty")
    if lines > MAX_BULK_LINES:
        raise InvalidArgument("lines", f"{lines} lines, over the limit of {MAX_BULK_LINES}")


def optional_event_id(value: Any, limits: Limits) -> str | None:
    """A ReturnStock call's own event id (its idempotency key); empty: none."""
    return optional_id(value, "event_id", limits)
