"""order lifecycle: partial reservations and the order history

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 10:00:00.000000

``orders`` gains ``allow_partial`` (the order was reserved line by line, each line getting what
it could, instead of all or nothing). A new table ``order_history`` keeps one row per step that
changed an order or reported on it (from, to, what was published, what caused it, when),
written by the engine in the batch's one statement; GetOrder reads it by ``(order_id, id)``,
the index.

No data is lost or rewritten: ``allow_partial`` is NOT NULL with a constant default, which
PostgreSQL 11+ adds as catalog metadata only, without rewriting or scanning ``orders``; every
existing order reads ``false``, that is all or nothing, which is what every order was before.
``order_history`` starts empty: the orders that exist have no history before this revision
(GetOrder shows their state, and the transitions from now on). Creating an empty table and its
index takes a moment; the brief ACCESS EXCLUSIVE lock on ``orders`` (adding the column) makes
the engine's writers wait for that moment only.

The downgrade drops ``order_history`` (every order's history with it) and ``allow_partial``.
An order reserved partially then reads as an all-or-nothing order holding the lines it got:
the code before this revision settles (commits, releases, expires) the lines an order holds,
whatever they cover, so the ledger stays sound; only a payment after such an order expired
reserves its items all or nothing again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("allow_partial", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "order_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=False),
        sa.Column("published", sa.String(length=32), nullable=True),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_history")),
    )
    op.create_index(
        "ix_order_history_order_id_id", "order_history", ["order_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_order_history_order_id_id", table_name="order_history")
    op.drop_table("order_history")
    op.drop_column("orders", "allow_partial")
