"""ledger queries: indexes for ListStock, ListMovements and GetStock as_of

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-16 10:00:00.000000

Four indexes, no column and no data change:

- ``ix_stocks_listing`` on ``stocks (product_id, coalesce(variant_id, ''), warehouse_id, id)``
  in the "C" collation (byte order, whatever the database's), without deleted rows:
  ListStock's order, so that a page is one index range after the previous page's key and a
  product id prefix is one range of it;
- ``ix_stocks_warehouse_listing``: the same order within one warehouse (ListStock by
  warehouse);
- ``ix_stock_movements_order_id_id`` on ``stock_movements (order_id, id)``, only the rows that
  name an order: ListMovements by order;
- ``ix_stock_movements_stock_id_created_at`` on ``stock_movements (stock_id, created_at, id)``:
  a stock row's movements up to an instant (GetStock ``as_of``) and ListMovements of a SKU
  within a time range.

ListMovements of a SKU reads ``uq_stocks_sku_warehouse`` for its stock rows, then
``ix_stock_movements_stock_id_id`` (revision 0001) for each row's movements.

None of them names a column the engine updates (levels, versions, policies), so stock updates
stay HOT; each costs one more index entry per inserted row, and a movement is inserted with
every change. No index serves a movement's operation or time range alone: those filters read
the ledger in id order, a bounded stretch per page (``db/stock_lists.py``).

The indexes are built CONCURRENTLY, outside the revision's transaction (Alembic's autocommit
block): the engine keeps writing stocks and movements meanwhile, where a plain CREATE INDEX
would hold its writes for the whole build (seconds per ten million movements). A build that
failed half-way leaves an INVALID index, which a rerun drops and builds again. The downgrade
drops the four indexes, concurrently too.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOT_DELETED = sa.text("deleted_at IS NULL")
# the columns in the "C" collation (postgresql_ops renders it where CREATE INDEX takes it)
C_COLLATED = {"product_id": 'COLLATE "C"', "warehouse_id": 'COLLATE "C"'}
VARIANT_KEY_C = "coalesce(variant_id COLLATE \"C\", '')"

# (name, table, columns, partial index predicate, postgresql_ops)
INDEXES: list[tuple[str, str, list[Any], sa.TextClause | None, dict[str, str]]] = [
    (
        "ix_stocks_listing",
        "stocks",
        ["product_id", sa.text(VARIANT_KEY_C), "warehouse_id", "id"],
        NOT_DELETED,
        C_COLLATED,
    ),
    (
        "ix_stocks_warehouse_listing",
        "stocks",
        ["warehouse_id", "product_id", sa.text(VARIANT_KEY_C), "id"],
        NOT_DELETED,
        C_COLLATED,
    ),
    (
        "ix_stock_movements_order_id_id",
        "stock_movements",
        ["order_id", "id"],
        sa.text("order_id IS NOT NULL"),
        {},
    ),
    (
        "ix_stock_movements_stock_id_created_at",
        "stock_movements",
        ["stock_id", "created_at", "id"],
        None,
        {},
    ),
]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, columns, where, ops in INDEXES:
            _drop_if_invalid(name)
            op.create_index(
                name,
                table,
                columns,
                unique=False,
                postgresql_where=where,
                postgresql_ops=ops,
                postgresql_concurrently=True,
                if_not_exists=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, *_ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


def _drop_if_invalid(name: str) -> None:
    """Drop what a failed concurrent build of ``name`` left (an INVALID index), if anything."""
    if op.get_context().as_sql:  # an offline SQL script: no database to look at
        return
    invalid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"name": name},
        )
        .scalar()
    )
    if invalid:
        op.execute(sa.text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))
