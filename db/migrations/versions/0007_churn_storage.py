"""churned tables: no truncation by VACUUM, a vacuum once 5 % of the rows are dead

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:00:00.000000

The tables the pruner deletes from (and the outbox, whose every row is updated once when it
is published) get two storage parameters:

- ``vacuum_truncate = false``: VACUUM no longer gives the empty pages at a table's end back
  to the file system. Giving them back takes an ACCESS EXCLUSIVE lock that the engine's next
  statements queue behind, and the pages are written again within seconds on a table that
  rows leave from one end while they arrive at the other. The table keeps the size of its
  busiest moment; ``bench/growth.py`` measured that the size then stops growing.
- ``autovacuum_vacuum_scale_factor = 0.05``: autovacuum visits once 5 % of the rows are dead,
  not 20 %; the pruner vacuums at the same threshold (``db/prune_sql.py``).

The movement partitions created from now on get them in ``db/partitions.py``; the existing
ones here. Catalog-only changes: no rewrite, no long lock. The downgrade resets them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "processed_events",
    "orders",
    "reservations",
    "order_history",
    "order_tombstones",
    "outbox",
)
PARAMETERS = "vacuum_truncate = false, autovacuum_vacuum_scale_factor = 0.05"
PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'stock_movements'::regclass"
)


def _churned() -> list[str]:
    partitions = [row[0] for row in op.get_bind().exec_driver_sql(PARTITIONS)]
    return [*TABLES, *partitions]


def upgrade() -> None:
    for table in _churned():
        op.execute(f'ALTER TABLE "{table}" SET ({PARAMETERS})')


def downgrade() -> None:
    for table in _churned():
        op.execute(f'ALTER TABLE "{table}" RESET (vacuum_truncate, autovacuum_vacuum_scale_factor)')
