"""Proto <-> domain for the stock operations: TransferStock, ReturnStock, BulkUpdateStock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from service.api import mapping
from service.api.generated import inventory_pb2 as pb
from service.domain import operations_validation
from service.domain.commands import Return, TransferStock, UpdateStock
from service.domain.errors import InvalidArgument, InventoryError
from service.domain.results import OrderResult, StockLevel, TransferResult
from service.domain.validation import Limits


def transfer_stock(
    request: pb.TransferStockRequest, limits: Limits, *, actor: str
) -> TransferStock:
    return operations_validation.transfer_stock(
        product_id=request.product_id,
        variant_id=request.variant_id,
        from_warehouse=request.from_warehouse,
        to_warehouse=request.to_warehouse,
        quantity=request.quantity,
        reason=request.reason,
        limits=limits,
        idempotency_key=request.idempotency_key if request.HasField("idempotency_key") else None,
        actor=actor,
    )


def transfer_response(result: TransferResult) -> pb.TransferStockResponse:
    return pb.TransferStockResponse(
        transfer_id=result.transfer_id,
        source=mapping.stock_level(result.source),
        destination=mapping.stock_level(result.destination),
        duplicate=result.duplicate,
    )


def return_stock(request: pb.ReturnStockRequest, limits: Limits, *, actor: str) -> Return:
    command = operations_validation.return_stock(
        request.order_id,
        [mapping.item_fields(item) for item in request.items],
        request.restock if request.HasField("restock") else None,
        request.reason,
        limits,
        event_id=operations_validation.optional_event_id(request.event_id, limits),
    )
    return replace(command, actor=actor)


def return_response(result: OrderResult) -> pb.ReturnStockResponse:
    return pb.ReturnStockResponse(
        order_id=result.order_id,
        state=mapping.order_state(result),
        returned=[mapping.reservation(line) for line in result.reservations],
        duplicate=result.duplicate,
    )


def bulk_update_lines(
    request: pb.BulkUpdateStockRequest,
    limits: Limits,
    *,
    default_warehouse_id: str,
    actor: str,
) -> list[UpdateStock | InvalidArgument]:
    """Each line's command, or its own validation error (the others still run)."""
    operations_validation.bulk_size(len(request.lines))
    lines: list[UpdateStock | InvalidArgument] = []
    for index, line in enumerate(request.lines):
        try:
            lines.append(
                mapping.update_stock(
                    line, limits, default_warehouse_id=default_warehouse_id, actor=actor
                )
            )
        except InvalidArgument as error:
            lines.append(error.within(f"lines[{index}]"))
    return lines


def bulk_update_response(
    results: Sequence[StockLevel | InventoryError],
) -> pb.BulkUpdateStockResponse:
    return pb.BulkUpdateStockResponse(results=[_bulk_result(result) for result in results])


def _bulk_result(result: StockLevel | InventoryError) -> pb.BulkUpdateStockResult:
    if isinstance(result, InventoryError):
        # INTERNAL never tells its cause (the engine logged it), as the interceptor would
        message = "internal error" if result.status == "INTERNAL" else result.message
        return pb.BulkUpdateStockResult(code=result.status, message=message)
    return pb.BulkUpdateStockResult(
        code="OK", stock=mapping.stock_level(result), duplicate=result.duplicate
    )
