"""stock operations: returned units per reservation, transfer links between movements

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00.000000

``reservations`` gains ``returned``: of a COMMITTED line's ``quantity``, the units that came
back (ReturnStock, ``order-returned``); a return is bounded by ``quantity - backordered -
returned`` per line. ``stock_movements`` gains ``transfer_id``: the ``TRANSFER_OUT`` and
``TRANSFER_IN`` movements of one TransferStock share it, so each names the other.

No data is lost or rewritten: ``returned`` is NOT NULL with a constant default and
``transfer_id`` is nullable, both catalog-only changes in PostgreSQL 11+. The check
``returned <= quantity`` is added NOT VALID (no scan under the ACCESS EXCLUSIVE lock) and then
validated, which scans ``reservations`` under a lock that lets the engine keep writing.

The downgrade drops both columns: what was returned and which movements formed a transfer is
then forgotten (the movements themselves stay, with their operations and quantities; the code
before this revision lists them but does not replay TRANSFER_* or RETURN* in its invariant
check, so run the check from this revision's code).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_reservations_returned_within_quantity"


def upgrade() -> None:
    op.add_column(
        "reservations",
        sa.Column("returned", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.execute(
        f"ALTER TABLE reservations ADD CONSTRAINT {CHECK} "
        "CHECK (returned >= 0 AND returned <= quantity) NOT VALID"
    )
    op.execute(f"ALTER TABLE reservations VALIDATE CONSTRAINT {CHECK}")
    op.add_column(
        "stock_movements", sa.Column("transfer_id", postgresql.UUID(as_uuid=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("stock_movements", "transfer_id")
    op.drop_constraint(op.f(CHECK), "reservations", type_="check")
    op.drop_column("reservations", "returned")
