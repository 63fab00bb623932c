"""Listings and warehouses between protobuf and the domain: ListStock, ListMovements,
ListWarehouses, UpsertWarehouse (the order and stock RPCs are in ``mapping.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from service.api.generated import inventory_pb2 as pb
from service.api.mapping import EPOCH, TIMESTAMP_SECONDS, stock_level, timestamp
from service.domain import listing, validation
from service.domain.errors import InvalidArgument
from service.domain.listing import MovementListing, StockListing
from service.domain.results import MovementView, Page, StockLevel
from service.domain.validation import Limits, WarehouseRecord


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
    if stamp.seconds not in TIMESTAMP_SECONDS or not 0 <= stamp.nanos < 1_000_000_000:
        raise InvalidArgument(field, "not a valid timestamp")
    try:
        return EPOCH + timedelta(seconds=stamp.seconds, microseconds=-(-stamp.nanos // 1000))
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
        transfer_id=view.transfer_id or "",
    )


def list_movements_response(page: Page[MovementView, str]) -> pb.ListMovementsResponse:
    return pb.ListMovementsResponse(
        movements=[movement(view) for view in page.items], next_page_token=page.next or ""
    )
