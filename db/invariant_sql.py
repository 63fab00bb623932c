"""The SQL of the invariant check: each query returns the rows that break a rule."""

from __future__ import annotations

import zlib

from sqlalchemy import text

# A row may be below zero by its backordered units, never below -backorder_limit.
BROKEN_LEVELS = text(
    "SELECT id, product_id, variant_id, warehouse_id, available, reserved, total, "
    "backorder_limit FROM stocks "
    "WHERE available < -backorder_limit OR reserved < 0 OR total <> available + reserved"
)

RESERVED_MISMATCH = text(
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.reserved, "
    "coalesce(p.pending, 0) AS pending FROM stocks s LEFT JOIN ("
    "SELECT stock_id, sum(quantity) AS pending FROM reservations WHERE status = 'PENDING' "
    "GROUP BY stock_id) p ON p.stock_id = s.id WHERE s.reserved <> coalesce(p.pending, 0)"
)

# A row's backordered units are those of its open (PENDING or COMMITTED) reservation lines
# (ix_reservations_backordered holds the lines with any).
BACKORDERED_MISMATCH = text(
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.backordered, "
    "coalesce(b.lines, 0) AS lines FROM stocks s LEFT JOIN ("
    "SELECT stock_id, sum(backordered) AS lines FROM reservations WHERE backordered > 0 "
    "AND status IN ('PENDING', 'COMMITTED') GROUP BY stock_id) b ON b.stock_id = s.id "
    "WHERE s.backordered <> coalesce(b.lines, 0)"
)

# What a row is below zero it owes to backordered lines: a deficit no line accounts for was
# given away (an oversell).
UNBACKED_DEFICIT = text(
    "SELECT id, product_id, variant_id, warehouse_id, available, backordered FROM stocks "
    "WHERE greatest(0, -available) > backordered"
)

# A stock alert still in the outbox with no movement of its SKU (and row, for a row alert) in
# the transaction that wrote it: both rows take the transaction's now() as created_at.
UNEXPLAINED_ALERTS = text(
    "SELECT o.id, o.payload->>'alert' AS alert, o.payload->>'product_id' AS product_id, "
    "o.payload->>'warehouse_id' AS warehouse_id FROM outbox o "
    "WHERE o.payload ? 'alert' AND NOT EXISTS ("
    "SELECT 1 FROM stocks s JOIN stock_movements m ON m.stock_id = s.id "
    "WHERE s.product_id = o.payload->>'product_id' "
    "AND s.variant_id IS NOT DISTINCT FROM o.payload->>'variant_id' "
    "AND (o.payload->>'warehouse_id' IS NULL OR s.warehouse_id = o.payload->>'warehouse_id') "
    "AND m.created_at = o.created_at)"
)

# every row that owes units (ix_stocks_backordered): the inventory_backordered_units gauge
BACKORDERED_UNITS = text("SELECT coalesce(sum(backordered), 0) FROM stocks WHERE backordered > 0")
MOVEMENTS = text(
    "SELECT m.stock_id, m.operation, m.quantity, m.available_after, m.reserved_after, "
    "m.total_after FROM stock_movements m ORDER BY m.stock_id, m.id"
)

CURRENT_LEVELS = text("SELECT id, available, reserved, total FROM stocks")

# A RESERVED order holds pending reservations; no other state does, and nothing is pending
# without a RESERVED order. A COMMITTED order has committed reservations.
LEDGER_MISMATCH = text(
    "SELECT o.order_id, o.state, count(r.id) FILTER (WHERE r.status = 'PENDING') AS pending, "
    "count(r.id) FILTER (WHERE r.status = 'COMMITTED') AS committed "
    "FROM orders o LEFT JOIN reservations r ON r.order_id = o.order_id "
    "GROUP BY o.order_id, o.state HAVING "
    "(o.state = 'RESERVED' AND count(r.id) FILTER (WHERE r.status = 'PENDING') = 0) OR "
    "(o.state <> 'RESERVED' AND count(r.id) FILTER (WHERE r.status = 'PENDING') > 0) OR "
    "(o.state = 'COMMITTED' AND count(r.id) FILTER (WHERE r.status = 'COMMITTED') = 0)"
)

ORPHAN_RESERVATIONS = text(
    "SELECT r.id, r.order_id FROM reservations r LEFT JOIN orders o ON o.order_id = r.order_id "
    "WHERE r.status = 'PENDING' AND o.order_id IS NULL"
)

# --- the live check (service/invariant_monitor.py) ---------------------------------------

# One snapshot's horizon: every transaction below pg_snapshot_xmin had ended when it was taken,
# and pg_snapshot_xmax is the next transaction id.
SNAPSHOT = text(
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon, "
    "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid"
)

# Stock rows written by the last :within transactions, with the sums of their pending
# reservations and of their open lines' backordered units. A row's xmin is the transaction
# that wrote its current version: an UPDATE by hand changes it too, where it leaves
# updated_at alone. age() of a frozen row is 2^31 - 1.
CHANGED_STOCKS = text(
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.available, s.reserved, "
    "s.total, s.backorder_limit, s.backordered, coalesce(p.pending, 0) AS pending, "
    "coalesce(b.lines, 0) AS lines FROM stocks s LEFT JOIN LATERAL ("
    "SELECT sum(r.quantity) AS pending FROM reservations r "
    "WHERE r.stock_id = s.id AND r.status = 'PENDING') p ON true LEFT JOIN LATERAL ("
    "SELECT sum(r.backordered) AS lines FROM reservations r WHERE r.stock_id = s.id "
    "AND r.backordered > 0 AND r.status IN ('PENDING', 'COMMITTED')) b ON true "
    "WHERE age(s.xmin) <= :within"
)

# The last :steps movements of each of those rows, oldest first (ix_stock_movements_stock_id_id).
RECENT_MOVEMENTS = text(
    "SELECT m.stock_id, m.operation, m.quantity, m.available_after, m.reserved_after, "
    "m.total_after FROM stocks s CROSS JOIN LATERAL ("
    "SELECT * FROM stock_movements sm WHERE sm.stock_id = s.id ORDER BY sm.id DESC LIMIT :steps"
    ") m WHERE age(s.xmin) <= :within ORDER BY m.stock_id, m.id"
)

TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
UNLOCK = text("SELECT pg_advisory_unlock(:key)")


def monitor_lock_key(app_id: str) -> int:
    """The advisory lock of the live check, one per app id, shared by every worker."""
    return zlib.crc32(f"inventory-invariant-monitor:{app_id}".encode()) | (0x1A7 << 32)
