"""stock policies: safety stock, reorder point, backorders

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000

``stocks`` gains ``safety_stock``, ``reorder_point`` (NULL: no alert), ``backorder_limit`` and
``backordered``; ``reservations`` gains ``backordered`` (of its ``quantity``, the units promised
beyond the row's sellable stock and not yet filled). A row may now go down to
``available >= -backorder_limit``: the CHECK ``available_not_negative`` becomes
``available_within_backorder_limit``. The partial index on reservations with backorders is
what the backorder fill reads (oldest first) and what the invariant check sums.

No data is lost or rewritten: every new column is NOT NULL with a constant default (or
nullable), which PostgreSQL 11+ adds as catalog metadata only, without rewriting the table;
every existing row reads the defaults (0, and NULL for ``reorder_point``), that is no policy
and nothing backordered, which is what the rows meant before. The new CHECKs hold for those
defaults (every existing row has ``available >= 0 = -backorder_limit``), but PostgreSQL still
verifies each one by reading its table once (no rewrite), and building the partial index reads
``reservations`` once more. The revision is one transaction and holds its ACCESS EXCLUSIVE
locks meanwhile, so writers of ``stocks`` and ``reservations`` wait for those reads: about a
second per million stock rows plus four million reservations, on a development machine.

The downgrade drops the index, the columns (every row's policy and backorder counts with them)
and the new CHECKs, and restores ``available_not_negative``. It fails, and changes nothing,
while a row is below zero (backordered units committed): such a row cannot be expressed
without backorders.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ZERO = sa.text("0")


def upgrade() -> None:
    op.add_column(
        "stocks", sa.Column("safety_stock", sa.BigInteger(), server_default=ZERO, nullable=False)
    )
    op.add_column("stocks", sa.Column("reorder_point", sa.BigInteger(), nullable=True))
    op.add_column(
        "stocks",
        sa.Column("backorder_limit", sa.BigInteger(), server_default=ZERO, nullable=False),
    )
    op.add_column(
        "stocks", sa.Column("backordered", sa.BigInteger(), server_default=ZERO, nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_stocks_safety_stock_not_negative"), "stocks", "safety_stock >= 0"
    )
    op.create_check_constraint(
        op.f("ck_stocks_reorder_point_not_negative"), "stocks", "reorder_point >= 0"
    )
    op.create_check_constraint(
        op.f("ck_stocks_backorder_limit_not_negative"), "stocks", "backorder_limit >= 0"
    )
    op.create_check_constraint(
        op.f("ck_stocks_backordered_not_negative"), "stocks", "backordered >= 0"
    )
    op.drop_constraint(op.f("ck_stocks_available_not_negative"), "stocks", type_="check")
    op.create_check_constraint(
        op.f("ck_stocks_available_within_backorder_limit"),
        "stocks",
        "available >= -backorder_limit",
    )

    op.add_column(
        "reservations",
        sa.Column("backordered", sa.BigInteger(), server_default=ZERO, nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_reservations_backordered_within_quantity"),
        "reservations",
        "backordered >= 0 AND backordered <= quantity",
    )
    op.create_index(
        "ix_stocks_backordered",
        "stocks",
        ["id"],
        unique=False,
        postgresql_where=sa.text("backordered > 0"),
    )
    op.create_index(
        "ix_reservations_backordered",
        "reservations",
        ["stock_id", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("backordered > 0"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_stocks_backordered", table_name="stocks", postgresql_where=sa.text("backordered > 0")
    )
    op.drop_index(
        "ix_reservations_backordered",
        table_name="reservations",
        postgresql_where=sa.text("backordered > 0"),
    )
    op.drop_constraint(
        op.f("ck_reservations_backordered_within_quantity"), "reservations", type_="check"
    )
    op.drop_column("reservations", "backordered")

    op.drop_constraint(op.f("ck_stocks_available_within_backorder_limit"), "stocks", type_="check")
    op.create_check_constraint(op.f("ck_stocks_available_not_negative"), "stocks", "available >= 0")
    for name in (
        "backordered_not_negative",
        "backorder_limit_not_negative",
        "reorder_point_not_negative",
        "safety_stock_not_negative",
    ):
        op.drop_constraint(op.f(f"ck_stocks_{name}"), "stocks", type_="check")
    for column in ("backordered", "backorder_limit", "reorder_point", "safety_stock"):
        op.drop_column("stocks", column)
