"""bounded growth: stock_movements partitioned by month, order tombstones, pruning indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-20 10:00:00.000000

- ``stock_movements`` becomes a table RANGE-partitioned by month on ``created_at``: the old
  table is renamed, a partitioned parent with the same columns, indexes and foreign key is
  created, one partition per month from the oldest row's month to two months ahead, every row
  is copied (ids kept), the id sequence moves to the new table (it keeps counting from where
  it was) and the old table is dropped. The primary key becomes ``(id, created_at)``: a
  partitioned table's unique keys must hold the partition key. The service creates the
  months ahead; ``stock_movements_default`` (the DEFAULT partition) takes a movement outside
  every month rather than fail its batch (``db/partitions.py``).
- ``order_tombstones (order_id, final_state, pruned_at)``: what is left of a pruned order.
- Indexes for the pruner: ``processed_events (processed_at)``, the finished orders by
  ``updated_at``, tombstones by ``pruned_at``.

The copy holds an ACCESS EXCLUSIVE lock on the movements for its duration (seconds per ten
million rows): run it with the workers stopped, as every revision that rewrites a table. The
downgrade copies the rows back into a plain table the same way.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = "'COMMITTED', 'RELEASED', 'EXPIRED', 'COMMIT_FAILED', 'REJECTED'"
MONTHS_AHEAD = 2
COLUMNS = (
    "id, stock_id, product_id, variant_id, warehouse_id, operation, quantity, available_after, "
    "reserved_after, total_after, reason, order_id, actor, created_at"
)
SEQUENCE = "stock_movements_id_seq"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text(f"nextval('{SEQUENCE}')"), nullable=False
        ),
        sa.Column("stock_id", sa.UUID(), nullable=False),
        sa.Column("product_id", sa.String(length=128), nullable=False),
        sa.Column("variant_id", sa.String(length=128), nullable=True),
        sa.Column("warehouse_id", sa.String(length=128), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("available_after", sa.BigInteger(), nullable=False),
        sa.Column("reserved_after", sa.BigInteger(), nullable=False),
        sa.Column("total_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def _indexes() -> None:
    op.create_index("ix_stock_movements_stock_id_id", "stock_movements", ["stock_id", "id"])
    op.create_index(
        "ix_stock_movements_stock_id_created_at",
        "stock_movements",
        ["stock_id", "created_at", "id"],
    )
    op.create_index(
        "ix_stock_movements_order_id_id",
        "stock_movements",
        ["order_id", "id"],
        postgresql_where=sa.text("order_id IS NOT NULL"),
    )


def _month_starts(first: datetime, last: datetime) -> list[datetime]:
    months = []
    month = datetime(first.year, first.month, 1, tzinfo=UTC)
    while month <= last:
        months.append(month)
        month = _next_month(month)
    return months


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def _partition(month: datetime) -> None:
    # the name and bounds as db/partitions.py makes them
    op.execute(
        f"CREATE TABLE stock_movements_p{month:%Y%m} PARTITION OF stock_movements "
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{_next_month(month).isoformat()}')"
    )


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE stock_movements RENAME TO stock_movements_unpartitioned")
    op.execute(
        "ALTER TABLE stock_movements_unpartitioned "
        "RENAME CONSTRAINT pk_stock_movements TO pk_stock_movements_unpartitioned"
    )
    op.execute(
        "ALTER TABLE stock_movements_unpartitioned RENAME CONSTRAINT "
        "fk_stock_movements_stock_id_stocks TO fk_stock_movements_unpartitioned_stock_id"
    )
    for name in ("stock_id_id", "stock_id_created_at", "order_id_id"):
        op.execute(f"ALTER INDEX ix_stock_movements_{name} RENAME TO ix_smu_{name}")
    op.create_table(
        "stock_movements",
        *_columns(),
        sa.ForeignKeyConstraint(
            ["stock_id"], ["stocks.id"], name="fk_stock_movements_stock_id_stocks"
        ),
        sa.PrimaryKeyConstraint("id", "created_at", name="pk_stock_movements"),
        postgresql_partition_by="RANGE (created_at)",
    )
    _indexes()
    now = datetime.now(UTC)
    oldest = bind.execute(sa.text("SELECT min(created_at) FROM stock_movements_unpartitioned"))
    first = oldest.scalar() or now
    last = _next_month(now)
    for _ in range(MONTHS_AHEAD - 1):
        last = _next_month(last)
    newest = bind.execute(sa.text("SELECT max(created_at) FROM stock_movements_unpartitioned"))
    last = max(last, newest.scalar() or now)
    for month in _month_starts(min(first, now), last):
        _partition(month)
    op.execute("CREATE TABLE stock_movements_default PARTITION OF stock_movements DEFAULT")
    op.execute(
        f"INSERT INTO stock_movements ({COLUMNS}) "
        f"SELECT {COLUMNS} FROM stock_movements_unpartitioned"
    )
    # the sequence keeps counting where it was: it only changes owner
    op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY stock_movements.id")
    op.execute("DROP TABLE stock_movements_unpartitioned")

    op.create_table(
        "order_tombstones",
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("final_state", sa.String(length=32), nullable=False),
        sa.Column(
            "pruned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("order_id", name="pk_order_tombstones"),
    )
    op.create_index("ix_order_tombstones_pruned_at", "order_tombstones", ["pruned_at"])
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])
    op.create_index(
        "ix_orders_finished_updated_at",
        "orders",
        ["updated_at"],
        postgresql_where=sa.text(f"state IN ({FINISHED})"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_finished_updated_at", table_name="orders")
    op.drop_index("ix_processed_events_processed_at", table_name="processed_events")
    op.drop_table("order_tombstones")
    op.execute("ALTER TABLE stock_movements RENAME TO stock_movements_partitioned")
    op.execute(
        "ALTER TABLE stock_movements_partitioned "
        "RENAME CONSTRAINT pk_stock_movements TO pk_stock_movements_partitioned"
    )
    op.execute(
        "ALTER TABLE stock_movements_partitioned RENAME CONSTRAINT "
        "fk_stock_movements_stock_id_stocks TO fk_stock_movements_partitioned_stock_id"
    )
    for name in ("stock_id_id", "stock_id_created_at", "order_id_id"):
        op.execute(f"ALTER INDEX ix_stock_movements_{name} RENAME TO ix_smp_{name}")
    op.create_table(
        "stock_movements",
        *_columns(),
        sa.ForeignKeyConstraint(
            ["stock_id"], ["stocks.id"], name="fk_stock_movements_stock_id_stocks"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stock_movements"),
    )
    _indexes()
    op.execute(
        f"INSERT INTO stock_movements ({COLUMNS}) SELECT {COLUMNS} FROM stock_movements_partitioned"
    )
    op.execute(f"ALTER SEQUENCE {SEQUENCE} OWNED BY stock_movements.id")
    op.execute("DROP TABLE stock_movements_partitioned")
