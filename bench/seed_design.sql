-- The seed design's ReserveStock, as the seed README describes it, for a 2-item order on 10 hot SKUs
-- one transaction per order; per item SELECT ... FOR UPDATE, UPDATE the stock row, INSERT the
-- reservation and the movement; COMMIT. Items locked in SKU order (kinder than the seed, which
-- locks in request order and can deadlock). Driven by pgbench (C, prepared statements): the
-- fastest any client could run the seed's design on this database.
-- Needs stock rows hot-0 .. hot-9 (no variant) in warehouse 'default' with ample available.
-- bench/baseline.py runs it (the SKU prefix substituted); by hand: pgbench -n -M prepared -c 64 -j 2 -T 10 --max-tries 20 -f seed_design.sql URL (and -c 8)
\set a random(0, 9)
\set b random(0, 8)
\set b CASE WHEN :b >= :a THEN :b + 1 ELSE :b END
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set oid random(1, 2000000000)
BEGIN;
SELECT id, available FROM stocks WHERE product_id = 'hot-' || :lo AND variant_id IS NULL AND warehouse_id = 'default' FOR UPDATE;
UPDATE stocks SET available = available - 1, reserved = reserved + 1, version = version + 1, updated_at = now() WHERE product_id = 'hot-' || :lo AND variant_id IS NULL AND warehouse_id = 'default' AND available >= 1;
INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status, expires_at) SELECT gen_random_uuid(), 'seed-' || :oid, id, product_id, NULL, warehouse_id, 1, 'PENDING', now() + interval '900 seconds' FROM stocks WHERE product_id = 'hot-' || :lo AND variant_id IS NULL AND warehouse_id = 'default';
INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, quantity, available_after, reserved_after, total_after, reason, order_id, actor) SELECT id, product_id, NULL, warehouse_id, 'RESERVE', 1, available, reserved, total, NULL, 'seed-' || :oid, 'bench' FROM stocks WHERE product_id = 'hot-' || :lo AND variant_id IS NULL AND warehouse_id = 'default';
SELECT id, available FROM stocks WHERE product_id = 'hot-' || :hi AND variant_id IS NULL AND warehouse_id = 'default' FOR UPDATE;
UPDATE stocks SET available = available - 1, reserved = reserved + 1, version = version + 1, updated_at = now() WHERE product_id = 'hot-' || :hi AND variant_id IS NULL AND warehouse_id = 'default' AND available >= 1;
INSERT INTO reservations (id, order_id, stock_id, product_id, variant_id, warehouse_id, quantity, status, expires_at) SELECT gen_random_uuid(), 'seed-' || :oid, id, product_id, NULL, warehouse_id, 1, 'PENDING', now() + interval '900 seconds' FROM stocks WHERE product_id = 'hot-' || :hi AND variant_id IS NULL AND warehouse_id = 'default';
INSERT INTO stock_movements (stock_id, product_id, variant_id, warehouse_id, operation, quantity, available_after, reserved_after, total_after, reason, order_id, actor) SELECT id, product_id, NULL, warehouse_id, 'RESERVE', 1, available, reserved, total, NULL, 'seed-' || :oid, 'bench' FROM stocks WHERE product_id = 'hot-' || :hi AND variant_id IS NULL AND warehouse_id = 'default';
COMMIT;
