"""Proto messages to validated commands and domain results to proto messages.

Requests become plain values first and go through ``service.domain.validation``, the same
checks the stream path uses, so both paths accept and refuse the same input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from service.api.generated import inventory_pb2 as pb
from service.domain import validation
from service.domain.commands import (
    Commit,
    Extend,
    Release,
    Reserve,
    SetStockPolicy,
    UpdateStock,
)
from service.domain.errors import InvalidArgument
from service.domain.results import (
    Availability,
    LineOutcome,
    OrderResult,
    OrderView,
    ReservationLine,
    StockLevel,
    StockView,
    Transition,
)
from service.domain.validation import Limits
from service.domain.values import (
    Item,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Sku,
    StockOperation,
)

# -- requests --


def item_fields(item: pb.StockItem) -> dict[str, Any]:
    return {
        "product_id": item.product_id,
        "variant_id": item.variant_id,
        "quantity": item.quantity,
        "warehouse_id": item.warehouse_id,
    }


def check_item(request: pb.CheckStockRequest | pb.StockItem, limits: Limits) -> Item:
    return Item(
        validation.sku(request.product_id, request.variant_id, limits),
        validation.check_quantity(request.quantity, limits),
        validation.optional_id(request.warehouse_id, "warehouse_id", limits),
    )


def bulk_items(request: pb.BulkCheckStockRequest, limits: Limits) -> list[Item]:
    """One item per request line, in order (lines are not merged: each gets its own answer)."""
    if not request.items:
        raise InvalidArgument("items", "must not be empty")
    if len(request.items) > limits.max_items_per_order:
        raise InvalidArgument(
            "items", f"{len(request.items)} items, over the limit of {limits.max_items_per_order}"
        )
    return [_bulk_line(item, index, limits) for index, item in enumerate(request.items)]


def _bulk_line(item: pb.StockItem, index: int, limits: Limits) -> Item:
    # proto fields are typed already: the checks of CheckStock, without the dict parse_item reads
    try:
        return check_item(item, limits)
    except InvalidArgument as error:
        raise error.within(f"items[{index}]") from None


def reserve(request: pb.ReserveStockRequest, limits: Limits) -> Reserve:
    return validation.reserve(
        request.order_id,
        [item_fields(item) for item in request.items],
        request.ttl_seconds,
        limits,
        allow_partial=request.allow_partial,
    )


def extend(request: pb.ExtendReservationRequest, limits: Limits) -> Extend:
    return validation.extend(request.order_id, request.ttl_seconds, limits)


def get_order(request: pb.GetOrderRequest, limits: Limits) -> str:
    return validation.require_id(request.order_id, "order_id", limits)


def release(request: pb.ReleaseReservationRequest, limits: Limits) -> Release:
    return validation.release(request.order_id, request.reason, limits)


def commit(request: pb.CommitReservationRequest, limits: Limits) -> Commit:
    return validation.commit(request.order_id, limits)


# built from the domain's enums, so a proto missing a domain value fails at import
_OPERATIONS: dict[int, str] = {pb.StockOperation.Value(op.value): op.value for op in StockOperation}
_ORDER_STATES: dict[OrderState | None, str] = {
    state: pb.OrderState.Name(pb.OrderState.Value(f"ORDER_STATE_{state.value}"))
    for state in OrderState
} | {None: "ORDER_STATE_UNSPECIFIED"}
_RESERVATION_STATUSES: dict[ReservationStatus, str] = {
    status: pb.ReservationStatus.Name(pb.ReservationStatus.Value(f"RESERVATION_STATUS_{status}"))
    for status in ReservationStatus
}


def update_stock(
    request: pb.UpdateStockRequest, limits: Limits, *, default_warehouse_id: str, actor: str
) -> UpdateStock:
    if not request.HasField("quantity"):
        raise InvalidArgument("quantity", "required")
    return validation.update_stock(
        product_id=request.product_id,
        variant_id=request.variant_id,
        warehouse_id=request.warehouse_id,
        # proto3 enums are open: an unknown number (or UNSPECIFIED) is None, refused by validation
        operation=_OPERATIONS.get(request.operation),
        quantity=request.quantity,
        reason=request.reason,
        limits=limits,
        default_warehouse_id=default_warehouse_id,
        expected_version=(
            request.expected_version if request.HasField("expected_version") else None
        ),
        idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
        actor=actor,
    )


def set_stock_policy(
    request: pb.SetStockPolicyRequest, limits: Limits, *, default_warehouse_id: str, actor: str
) -> SetStockPolicy:
    return validation.set_stock_policy(
        product_id=request.product_id,
        variant_id=request.variant_id,
        warehouse_id=request.warehouse_id,
        safety_stock=request.safety_stock,
        reorder_point=request.reorder_point if request.HasField("reorder_point") else None,
        backorder_limit=request.backorder_limit,
        reason=request.reason,
        limits=limits,
        default_warehouse_id=default_warehouse_id,
        expected_version=(
            request.expected_version if request.HasField("expected_version") else None
        ),
        idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
        actor=actor,
    )


def get_stock(request: pb.GetStockRequest, limits: Limits) -> tuple[Sku, str | None]:
    return (
        validation.sku(request.product_id, request.variant_id, limits),
        validation.optional_id(request.warehouse_id, "warehouse_id", limits),
    )


# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z
TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_of(request: pb.GetStockRequest) -> datetime | None:
    """GetStock's ``as_of`` as an aware UTC datetime; None when unset (the present levels).

    Nanoseconds are cut to microseconds, PostgreSQL's precision: a movement stamped at or
    before the instant is at or before its cut."""
    if not request.HasField("as_of"):
        return None
    stamp = request.as_of
    if stamp.seconds not in TIMESTAMP_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument("as_of", "not a valid timestamp")
    return EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


# -- responses --


def availability(result: Availability) -> pb.ItemAvailability:
    message = pb.ItemAvailability(**_availability_scalars(result))
    _set_counts(message.available_by_warehouse, result.warehouses)
    return message


def _availability_scalars(result: Availability) -> dict[str, Any]:
    return {
        "product_id": result.sku.product_id,
        "variant_id": result.sku.variant_id or "",
        "warehouse_id": result.warehouse_id or "",
        "requested_quantity": result.requested,
        "available_quantity": result.available,
        "available": result.sufficient,
        "known": result.known,
    }


def _set_counts(field: Any, counts: Mapping[str, int]) -> None:
    # item by item: a map field's update() and constructor argument take a generic, slower path
    for key, count in counts.items():
        field[key] = count


def check_stock_response(result: Availability) -> pb.CheckStockResponse:
    return pb.CheckStockResponse(
        available=result.sufficient,
        available_quantity=result.available,
        item=availability(result),
    )


def bulk_check_response(results: Sequence[Availability]) -> pb.BulkCheckStockResponse:
    response = pb.BulkCheckStockResponse(all_available=all(r.sufficient for r in results))
    add = response.items.add  # built in place: half the cost of a list of messages
    for result in results:
        _set_counts(add(**_availability_scalars(result)).available_by_warehouse, result.warehouses)
    return response


def reservation(line: ReservationLine) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=line.reservation_id,
        product_id=line.sku.product_id,
        variant_id=line.sku.variant_id or "",
        warehouse_id=line.warehouse_id,
        quantity=line.quantity,
        status=_RESERVATION_STATUSES[line.status],
        backordered=line.backordered,
    )


def order_state(result: OrderResult) -> str:
    return _ORDER_STATES[result.state]


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def line_outcome(line: LineOutcome) -> pb.LineOutcome:
    return pb.LineOutcome(
        product_id=line.sku.product_id,
        variant_id=line.sku.variant_id or "",
        warehouse_id=line.warehouse_id or "",
        requested=line.requested,
        reserved=line.reserved,
        short=line.short,
    )


def reserve_response(result: OrderResult) -> pb.ReserveStockResponse:
    response = pb.ReserveStockResponse(
        order_id=result.order_id,
        state=order_state(result),
        reservations=[reservation(line) for line in result.reservations],
        duplicate=result.duplicate,
        lines=[line_outcome(line) for line in result.lines],
    )
    if result.expires_at is not None:
        response.expires_at.CopyFrom(timestamp(result.expires_at))
    return response


def extend_response(result: OrderResult) -> pb.ExtendReservationResponse:
    response = pb.ExtendReservationResponse(
        order_id=result.order_id,
        state=order_state(result),
        reservations=[reservation(line) for line in result.reservations],
        # the engine publishes EXTENDED exactly when the deadline moved
        extended=result.published is ResultStatus.EXTENDED,
    )
    if result.expires_at is not None:
        response.expires_at.CopyFrom(timestamp(result.expires_at))
    return response


def stock_item(item: Item) -> pb.StockItem:
    return pb.StockItem(
        product_id=item.sku.product_id,
        variant_id=item.sku.variant_id or "",
        quantity=item.quantity,
        warehouse_id=item.warehouse_id or "",
    )


def transition(step: Transition) -> pb.Transition:
    return pb.Transition(
        at=timestamp(step.at),
        from_state=_ORDER_STATES[step.from_state],
        to_state=_ORDER_STATES[step.to_state],
        published=step.published.value if step.published is not None else "",
        cause=step.cause,
    )


def order_view(view: OrderView) -> pb.GetOrderResponse:
    response = pb.GetOrderResponse(
        order_id=view.order_id,
        state=_ORDER_STATES[view.state],
        items=[stock_item(item) for item in view.items],
        reservations=[reservation(line) for line in view.reservations],
        allow_partial=view.allow_partial,
        history=[transition(step) for step in view.history],
    )
    if view.expires_at is not None:
        response.expires_at.CopyFrom(timestamp(view.expires_at))
    return response


def release_response(result: OrderResult) -> pb.ReleaseReservationResponse:
    return pb.ReleaseReservationResponse(
        order_id=result.order_id,
        state=order_state(result),
        reservations=[reservation(line) for line in result.reservations],
        duplicate=result.duplicate,
    )


def commit_response(result: OrderResult) -> pb.CommitReservationResponse:
    return pb.CommitReservationResponse(
        order_id=result.order_id,
        state=order_state(result),
        reservations=[reservation(line) for line in result.reservations],
        duplicate=result.duplicate,
    )


def stock_level(level: StockLevel) -> pb.StockLevel:
    return pb.StockLevel(
        stock_id=level.stock_id,
        product_id=level.sku.product_id,
        variant_id=level.sku.variant_id or "",
        warehouse_id=level.warehouse_id,
        available=level.available,
        reserved=level.reserved,
        total=level.total,
        version=level.version,
        sellable=level.sellable,
        backordered=level.backordered,
        safety_stock=level.safety_stock,
        # None leaves the optional field unset: "no alert", told apart from a reorder point of 0
        reorder_point=level.reorder_point,
        backorder_limit=level.backorder_limit,
    )


def get_stock_response(view: StockView) -> pb.GetStockResponse:
    return pb.GetStockResponse(
        product_id=view.sku.product_id,
        variant_id=view.sku.variant_id or "",
        warehouses=[stock_level(level) for level in view.warehouses],
        available=view.available,
        reserved=view.reserved,
        total=view.total,
        sellable=sum(level.sellable for level in view.warehouses),
        backordered=sum(level.backordered for level in view.warehouses),
    )


# -- warehouses --
