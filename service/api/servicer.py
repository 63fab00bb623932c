"""InventoryService: each method parses, validates, calls the engine or the queries, maps back.

No decisions are made here and no status is set here: errors are raised and the interceptor
(service/api/errors.py) answers them.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

import grpc

from db import warehouse_sql
from service.api import listing_mapping, mapping, operations_mapping
from service.api.auth import AdminAuth
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container
from service.domain.commands import UpdateStock
from service.domain.errors import InventoryError, NotFound
from service.domain.results import StockLevel

Context: TypeAlias = grpc.aio.ServicerContext

log = logging.getLogger(__name__)


class DeadlineExceeded(InventoryError):
    status = "DEADLINE_EXCEEDED"


def _before_write(context: Context) -> None:
    """A write whose caller already gave up is not started (the engine never splits an order)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("deadline exceeded before the write started")


class InventoryServicer(pb_grpc.InventoryServiceServicer):
    def __init__(self, container: Container, auth: AdminAuth) -> None:
        self._engine = container.engine
        self._queries = container.queries
        # GetOrder looks up container.orders per call: a container that serves no GetOrder
        # (the TLS tests' fake) need not have it
        self._container = container
        self._limits = container.limits
        self._default_warehouse = container.settings.default_warehouse_id
        self._auth = auth

    async def CheckStock(
        self, request: pb.CheckStockRequest, context: Context
    ) -> pb.CheckStockResponse:
        item = mapping.check_item(request, self._limits)
        [result] = await self._queries.check_stock([item])
        if not result.known:
            raise NotFound(f"unknown SKU {item.sku.key}")
        return mapping.check_stock_response(result)

    async def BulkCheckStock(
        self, request: pb.BulkCheckStockRequest, context: Context
    ) -> pb.BulkCheckStockResponse:
        items = mapping.bulk_items(request, self._limits)
        return mapping.bulk_check_response(await self._queries.check_stock(items))

    async def GetStock(self, request: pb.GetStockRequest, context: Context) -> pb.GetStockResponse:
        sku, warehouse_id = mapping.get_stock(request, self._limits)
        at = mapping.as_of(request)
        if at is not None:
            # rebuilt from the movement ledger, in PostgreSQL: never the cache's present levels
            view = await self._queries.get_stock_as_of(sku, warehouse_id, at)
            return mapping.get_stock_response(view)
        return mapping.get_stock_response(await self._queries.get_stock(sku, warehouse_id))

    async def ReserveStock(
        self, request: pb.ReserveStockRequest, context: Context
    ) -> pb.ReserveStockResponse:
        command = mapping.reserve(request, self._limits)
        _before_write(context)
        return mapping.reserve_response(await self._engine.reserve(command))

    async def ExtendReservation(
        self, request: pb.ExtendReservationRequest, context: Context
    ) -> pb.ExtendReservationResponse:
        command = mapping.extend(request, self._limits)
        _before_write(context)
        return mapping.extend_response(await self._engine.extend(command))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        order_id = mapping.get_order(request, self._limits)
        return mapping.order_view(await self._container.orders.get_order(order_id))

    async def ListStock(
        self, request: pb.ListStockRequest, context: Context
    ) -> pb.ListStockResponse:
        listing = listing_mapping.list_stock(request, self._limits)
        return listing_mapping.list_stock_response(await self._container.ledger.list_stock(listing))

    async def ListMovements(
        self, request: pb.ListMovementsRequest, context: Context
    ) -> pb.ListMovementsResponse:
        listing = listing_mapping.list_movements(request, self._limits)
        return listing_mapping.list_movements_response(
            await self._container.ledger.list_movements(listing)
        )

    async def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Context
    ) -> pb.ReleaseReservationResponse:
        command = mapping.release(request, self._limits)
        _before_write(context)
        return mapping.release_response(await self._engine.release(command))

    async def CommitReservation(
        self, request: pb.CommitReservationRequest, context: Context
    ) -> pb.CommitReservationResponse:
        command = mapping.commit(request, self._limits)
        _before_write(context)
        return mapping.commit_response(await self._engine.commit(command))

    async def UpdateStock(
        self, request: pb.UpdateStockRequest, context: Context
    ) -> pb.UpdateStockResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        command = mapping.update_stock(
            request, self._limits, default_warehouse_id=self._default_warehouse, actor=actor
        )
        _before_write(context)
        return pb.UpdateStockResponse(
            stock=mapping.stock_level(await self._engine.update_stock(command))
        )

    async def SetStockPolicy(
        self, request: pb.SetStockPolicyRequest, context: Context
    ) -> pb.SetStockPolicyResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        command = mapping.set_stock_policy(
            request, self._limits, default_warehouse_id=self._default_warehouse, actor=actor
        )
        _before_write(context)
        return pb.SetStockPolicyResponse(
            stock=mapping.stock_level(await self._engine.set_policy(command))
        )

    async def ListWarehouses(
        self, request: pb.ListWarehousesRequest, context: Context
    ) -> pb.ListWarehousesResponse:
        # one statement, no transaction: the interceptor answers a database failure UNAVAILABLE
        reads = self._container.db.execution_options(isolation_level="AUTOCOMMIT")
        async with reads.connect() as conn:
            return listing_mapping.list_warehouses_response(
                await warehouse_sql.list_warehouses(conn)
            )

    async def UpsertWarehouse(
        self, request: pb.UpsertWarehouseRequest, context: Context
    ) -> pb.UpsertWarehouseResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        record = listing_mapping.upsert_warehouse(request, self._limits)
        _before_write(context)
        stored = await self._engine.upsert_warehouse(record)
        # no ledger table records warehouse changes: the log is their trail
        log.info(
            "warehouse %s upserted: priority %d, active %s",
            stored.warehouse_id,
            stored.priority,
            stored.active,
            extra={"actor": actor},
        )
        return pb.UpsertWarehouseResponse(warehouse=listing_mapping.warehouse(stored))

    async def TransferStock(
        self, request: pb.TransferStockRequest, context: Context
    ) -> pb.TransferStockResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        command = operations_mapping.transfer_stock(request, self._limits, actor=actor)
        _before_write(context)
        return operations_mapping.transfer_response(await self._engine.transfer(command))

    async def ReturnStock(
        self, request: pb.ReturnStockRequest, context: Context
    ) -> pb.ReturnStockResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        command = operations_mapping.return_stock(request, self._limits, actor=actor)
        _before_write(context)
        return operations_mapping.return_response(await self._engine.return_stock(command))

    async def BulkUpdateStock(
        self, request: pb.BulkUpdateStockRequest, context: Context
    ) -> pb.BulkUpdateStockResponse:
        actor = self._auth.authorize(context.invocation_metadata(), context.peer_identities())
        lines = operations_mapping.bulk_update_lines(
            request, self._limits, default_warehouse_id=self._default_warehouse, actor=actor
        )
        _before_write(context)
        valid = [line for line in lines if isinstance(line, UpdateStock)]
        applied = iter(await self._engine.update_stock_many(valid))
        results: list[StockLevel | InventoryError] = [
            next(applied) if isinstance(line, UpdateStock) else line for line in lines
        ]
        return operations_mapping.bulk_update_response(results)
