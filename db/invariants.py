"""The SQL of the invariant check: each query returns the rows that break a rule."""

from __future__ import annotations

from sqlalchemy import text

BROKEN_LEVELS = text(
    "SELECT id, product_id, variant_id, warehouse_id, available, reserved, total FROM stocks "
    "WHERE available < 0 OR reserved < 0 OR total <> available + reserved"
)

RESERVED_MISMATCH = text(
    "SELECT s.id, s.product_id, s.variant_id, s.warehouse_id, s.reserved, "
    "coalesce(p.pending, 0) AS pending FROM stocks s LEFT JOIN ("
    "SELECT stock_id, sum(quantity) AS pending FROM reservations WHERE status = 'PENDING' "
    "GROUP BY stock_id) p ON p.stock_id = s.id WHERE s.reserved <> coalesce(p.pending, 0)"
)

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
