"""Tables, constraints and indexes (docs/architecture.md, Data model).

Alembic migrations create them in production.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


ZERO = text("0")
# the order states retention may prune (service/domain/values.py FINISHED_STATES mirrors them)
FINISHED_STATES = ("COMMITTED", "RELEASED", "EXPIRED", "COMMIT_FAILED", "REJECTED")
FINISHED_SQL = ", ".join(f"'{state}'" for state in FINISHED_STATES)
# ListStock compares ids in byte order: the "C" collation (db/stock_lists.py)
VARIANT_KEY_C = "coalesce(variant_id COLLATE \"C\", '')"
C_COLLATED = {"product_id": 'COLLATE "C"', "warehouse_id": 'COLLATE "C"'}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Timestamps:
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Warehouse(Timestamps, Base):
    __tablename__ = "warehouses"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Stock(Timestamps, Base):
    __tablename__ = "stocks"
    __table_args__ = (
        # backordered units committed may take a row below zero, never below its limit
        CheckConstraint("available >= -backorder_limit", name="available_within_backorder_limit"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("total = available + reserved", name="total_is_available_plus_reserved"),
        CheckConstraint("safety_stock >= 0", name="safety_stock_not_negative"),
        CheckConstraint("reorder_point >= 0", name="reorder_point_not_negative"),
        CheckConstraint("backorder_limit >= 0", name="backorder_limit_not_negative"),
        CheckConstraint("backordered >= 0", name="backordered_not_negative"),
        # the rows that owe units: the backordered-units gauge sums only these
        Index("ix_stocks_backordered", "id", postgresql_where=text("backordered > 0")),
        Index(
            "uq_stocks_sku_warehouse",
            "product_id",
            text("coalesce(variant_id, '')"),
            "warehouse_id",
            unique=True,
        ),
        # ListStock's order in byte order, all rows and per warehouse (db/stock_lists.py).
        # The columns' "C" collation goes in postgresql_ops, where CREATE INDEX takes it, so
        # that the comparison with the database (which reflects no index collation) holds.
        Index(
            "ix_stocks_listing",
            "product_id",
            text(VARIANT_KEY_C),
            "warehouse_id",
            "id",
            postgresql_ops=C_COLLATED,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_stocks_warehouse_listing",
            "warehouse_id",
            "product_id",
            text(VARIANT_KEY_C),
            "id",
            postgresql_ops=C_COLLATED,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(128), nullable=False)
    variant_id: Mapped[str | None] = mapped_column(String(128))
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("warehouses.id"), nullable=False)
    available: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # the row's policy (service/domain/values.py, StockPolicy); the defaults are no policy
    safety_stock: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=ZERO)
    reorder_point: Mapped[int | None] = mapped_column(BigInteger)  # NULL: no LOW_STOCK alert
    backorder_limit: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=ZERO)
    # the sum of ``backordered`` over its PENDING and COMMITTED reservations
    backordered: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=ZERO)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Order(Timestamps, Base):
    """The order ledger: what the engine knows of each order, keyed by the pipeline's id."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_state_expires_at", "state", "expires_at"),
        # the pruner's read: finished orders by their last change (revision 0005)
        Index(
            "ix_orders_finished_updated_at",
            "updated_at",
            postgresql_where=text(f"state IN ({FINISHED_SQL})"),
        ),
    )

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(32), nullable=False)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=1)
    last_event_id: Mapped[str | None] = mapped_column(String(128))
    # reserved line by line, each getting what it could (false: all or nothing)
    allow_partial: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())


class OrderHistory(Base):
    """Append-only: one row per step that changes an order or reports on it (from and to state,
    the status published, the cause), written by the engine in the batch's statement (``at`` is
    that transaction's time); GetOrder reads it by ``(order_id, id)``.

    Nothing updates or deletes a row. It grows with the steps (a few per order: one per event
    or RPC that moved it), so it is bounded by the orders kept: it is pruned with its order once
    retention exists.
    """

    __tablename__ = "order_history"
    __table_args__ = (Index("ix_order_history_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128), nullable=False)
    from_state: Mapped[str | None] = mapped_column(String(32))  # NULL: the order's first step
    to_state: Mapped[str] = mapped_column(String(32), nullable=False)
    published: Mapped[str | None] = mapped_column(String(32))  # the ResultStatus, if any
    cause: Mapped[str] = mapped_column(String(200), nullable=False)  # event id, rpc:<Method>, ...
    at: Mapped[datetime] = _now()


class Reservation(Timestamps, Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "status IN ('PENDING', 'COMMITTED', 'RELEASED', 'EXPIRED')", name="status_known"
        ),
        Index("ix_reservations_order_id", "order_id"),
        Index(
            "ix_reservations_stock_id_pending",
            "stock_id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        CheckConstraint(
            "backordered >= 0 AND backordered <= quantity", name="backordered_within_quantity"
        ),
        CheckConstraint("returned >= 0 AND returned <= quantity", name="returned_within_quantity"),
        # the backorder fill's read (db/backorder_sql.py)
        Index(
            "ix_reservations_backordered",
            "stock_id",
            "created_at",
            "id",
            postgresql_where=text("backordered > 0"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128), nullable=False)
    stock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stocks.id"), nullable=False)
    product_id: Mapped[str] = mapped_column(String(128), nullable=False)
    variant_id: Mapped[str | None] = mapped_column(String(128))
    warehouse_id: Mapped[str] = mapped_column(String(128), nullable=False)
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    # of ``quantity``, the units promised beyond the row's sellable stock and not yet filled
    backordered: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=ZERO)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # of a COMMITTED line's ``quantity``, the units that came back (ReturnStock, order-returned)
    returned: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=ZERO)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProcessedEvent(Base):
    __tablename__ = "processed_events"
    # the pruner's read: the oldest rows first (revision 0005)
    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)

    # an event id is unique within its topic; the same id on two topics is two events
    topic: Mapped[str] = mapped_column(String(256), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    order_id: Mapped[str | None] = mapped_column(String(128))
    processed_at: Mapped[datetime] = _now()


class StockMovement(Base):
    """Append-only audit trail: one row per change of a stock row, in the same transaction.

    Range-partitioned by month on ``created_at`` (revision 0005): the service creates the
    partitions ahead (``db/partitions.py``) and drops whole months past the movement
    retention; a DEFAULT partition takes what no month does (docs/architecture.md, Data
    model).
    """

    __tablename__ = "stock_movements"
    __table_args__ = (
        Index("ix_stock_movements_stock_id_id", "stock_id", "id"),
        # a row's movements up to an instant (GetStock as_of), a SKU's within a time range
        Index("ix_stock_movements_stock_id_created_at", "stock_id", "created_at", "id"),
        # ListMovements by order: only the rows that name one
        Index(
            "ix_stock_movements_order_id_id",
            "order_id",
            "id",
            postgresql_where=text("order_id IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    # the partition key must be part of the primary key
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    stock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stocks.id"), nullable=False)
    product_id: Mapped[str] = mapped_column(String(128), nullable=False)
    variant_id: Mapped[str | None] = mapped_column(String(128))
    warehouse_id: Mapped[str] = mapped_column(String(128), nullable=False)
    operation: Mapped[str] = mapped_column(String(32), nullable=False)
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    available_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reserved_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    total_after: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    order_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), primary_key=True
    )
    # the TRANSFER_OUT and TRANSFER_IN movements of one TransferStock share it
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))


class OrderTombstone(Base):
    """What is left of a pruned order (revision 0005): its id and final state, so that a late
    event for it is answered as for that state, never taken for a new order."""

    __tablename__ = "order_tombstones"
    __table_args__ = (Index("ix_order_tombstones_pruned_at", "pruned_at"),)

    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    final_state: Mapped[str] = mapped_column(String(32), nullable=False)
    pruned_at: Mapped[datetime] = _now()


class Outbox(Base):
    """Facts committed with their cause, waiting for the relay to publish them."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_published_at", "published_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(256), nullable=False)
    key: Mapped[str] = mapped_column(String(512), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
