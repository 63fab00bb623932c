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
from service.domain import listing, validation
from service.domain.commands import (
    Commit,
    Extend,
    Release,
    Reserve,
    SetStockPolicy,
    UpdateStock,
)
from service.domain.errors import InvalidArgument
from service.domain.listing import MovementListing, StockListing
from service.domain.results import (
    Availability,
    LineOutcome,
    MovementView,
    OrderResult,
    OrderView,
    Page,
    ReservationLine,
    StockLevel,
    StockView,
    Transition,
)
from service.domain.validation import Limits, WarehouseRecord
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
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_of(request: pb.GetStockRequest) -> datetime | None:
    """GetStock's ``as_of`` as an aware UTC datetime; None when unset (the present levels).

    Nanoseconds are cut to microseconds, PostgreSQL's precision: a movement stamped at or
    before the instant is at or before its cut."""
    if not request.HasField("as_of"):
        return None
    stamp = request.as_of
    if stamp.seconds not in _TIMESTAMP_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument("as_of", "not a valid timestamp")
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


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


def upsert_warehouse(request: pb.UpsertWarehouseRequest, limits: Limits) -> WarehouseRecord:
    return validation.upsert_warehouse(
        warehouse_id=request.warehouse_id,
        name=request.name,
        priority=request.priority,
        active=request.active,
        limits=limits,
    )


def warehouse(record: WarehouseRecord) -> pb.Warehouse:
    return pb.Warehouse(
        warehouse_id=record.warehouse_id,
        name=record.name,
        priority=record.priority,
        active=record.active,
    )


def list_warehouses_response(records: Sequence[WarehouseRecord]) -> pb.ListWarehousesResponse:
    return pb.ListWarehousesResponse(warehouses=[warehouse(record) for record in records])


# -- listings (ListStock, ListMovements) --


def list_stock(request: pb.ListStockRequest, limits: Limits) -> StockListing:
    return listing.stock_listing(
        page_size=request.page_size,
        page_token=request.page_token,
        warehouse_id=request.warehouse_id,
        product_id_prefix=request.product_id_prefix,
        below_reorder_point=request.below_reorder_point,
        out_of_stock=request.out_of_stock,
        backordered=request.backordered,
        limits=limits,
    )


def list_movements(request: pb.ListMovementsRequest, limits: Limits) -> MovementListing:
    return listing.movement_listing(
        page_size=request.page_size,
        page_token=request.page_token,
        product_id=request.product_id,
        variant_id=request.variant_id,
        warehouse_id=request.warehouse_id,
        order_id=request.order_id,
        operation=request.operation,
        since=_range_bound(request, "since"),
        until=_range_bound(request, "until"),
        newest_first=request.newest_first,
        limits=limits,
    )


def _range_bound(request: pb.ListMovementsRequest, field: str) -> datetime | None:
    """A bound of ``[since, until)`` as an aware UTC datetime; None when unset.

    Nanoseconds are rounded up to microseconds, PostgreSQL's precision, at both ends: a
    movement stamped at microsecond ``t`` is at or after ``since`` exactly when ``t`` is at or
    after ``since`` rounded up, and before ``until`` exactly when before ``until`` rounded up."""
    if not request.HasField(field):
        return None
    stamp: Timestamp = getattr(request, field)
    if stamp.seconds not in _TIMESTAMP_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "not a valid timestamp")
    try:
        return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=-(-stamp.nanos // 1000))
    except OverflowError:  # the last microsecond of year 9999, rounded up
        raise InvalidArgument(field, "not a valid timestamp") from None


def list_stock_response(page: Page[StockLevel, str]) -> pb.ListStockResponse:
    return pb.ListStockResponse(
        stock=[stock_level(level) for level in page.items], next_page_token=page.next or ""
    )


def movement(view: MovementView) -> pb.Movement:
    return pb.Movement(
        id=view.id,
        stock_id=view.stock_id,
        product_id=view.sku.product_id,
        variant_id=view.sku.variant_id or "",
        warehouse_id=view.warehouse_id,
        operation=view.operation,
        quantity=view.quantity,
        available_after=view.available_after,
        reserved_after=view.reserved_after,
        total_after=view.total_after,
        reason=view.reason or "",
        order_id=view.order_id or "",
        actor=view.actor,
        created_at=timestamp(view.created_at),
    )


def list_movements_response(page: Page[MovementView, str]) -> pb.ListMovementsResponse:
    return pb.ListMovementsResponse(
        movements=[movement(view) for view in page.items], next_page_token=page.next or ""
    )
