"""drop ix_reservations_status_expires_at, which no query reads

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 23:40:00.000000

Every reservation insert and every status change (a commit, a release, an expiry) wrote an
entry to ``ix_reservations_status_expires_at``, and no statement has read it since the
sweeper expires by ``orders`` (``ix_orders_state_expires_at``). The reads by status go to the
partial ``ix_reservations_stock_id_pending`` (pending lines by stock row, the invariant
checks) and ``ix_reservations_backordered``; by order, to ``ix_reservations_order_id``.

Dropped ``CONCURRENTLY`` outside the migration's transaction: a plain DROP INDEX takes an
ACCESS EXCLUSIVE lock on ``reservations``, and the engine's next batches would queue behind
it for as long as any transaction that touched the table runs. The downgrade builds it again
the same way.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_reservations_status_expires_at"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON reservations (status, expires_at)"
        )
