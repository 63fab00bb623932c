"""Every Prometheus metric of the service, declared once, named ``inventory_*``.

Labels stay low-cardinality: methods, codes, topics, outcomes; never ids or SKUs.

Under ``serve --role api --processes N`` (``service/supervisor.py``) prometheus_client runs in
multiprocess mode: counters and histograms add up over the processes, and each gauge says
how its processes' values combine (``multiprocess_mode``; ignored by a single process).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)

# engine
ENGINE_BATCH_SIZE = Histogram(
    "inventory_engine_batch_size", "Commands per group-committed transaction", buckets=BATCH_BUCKETS
)
ENGINE_BATCH_SECONDS = Histogram(
    "inventory_engine_batch_seconds",
    "Time to run one batch transaction, lock to commit",
    buckets=LATENCY_BUCKETS,
)
ENGINE_BATCH_FAILURES = Counter(
    "inventory_engine_batch_failures_total", "Batches that failed as a whole", ["reason"]
)
ENGINE_COMMANDS = Counter(
    "inventory_engine_commands_total", "Commands by kind and outcome", ["kind", "outcome"]
)
RESERVATION_OUTCOMES = Counter(
    "inventory_reservation_outcomes_total",
    "Order results published (RESERVED, REJECTED, COMMITTED, ...)",
    ["status"],
)
STOCK_ALERTS = Counter(
    "inventory_stock_alerts_total",
    "Alerts written to stock-alerts (LOW_STOCK, OUT_OF_STOCK, BACK_IN_STOCK), per row and per SKU",
    ["kind"],
)
BACKORDERED_UNITS = Gauge(
    "inventory_backordered_units",
    "Units promised beyond sellable stock and not yet filled, over every stock row",
    multiprocess_mode="livemax",  # one database: every process that samples it reads the same
)
BACKORDERS_FILLED = Counter(
    "inventory_backorders_filled_total", "Orders whose backordered units were all filled"
)
DUPLICATES = Counter(
    "inventory_duplicate_commands_total", "Commands that had no effect (redelivery)", ["kind"]
)
DB_POOL_IN_USE = Gauge(
    "inventory_db_pool_connections_in_use",
    "Checked-out DB connections",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "inventory_db_pool_size", "Configured DB pool size", multiprocess_mode="livesum"
)

# gRPC
RPC_REQUESTS = Counter(
    "inventory_rpc_requests_total", "RPCs by method and code", ["method", "code"]
)
RPC_SECONDS = Histogram(
    "inventory_rpc_seconds", "RPC latency by method", ["method"], buckets=LATENCY_BUCKETS
)

# streams
EVENTS = Counter(
    "inventory_events_total", "Order events by topic and outcome", ["topic", "outcome"]
)
DLQ_EVENTS = Counter("inventory_dlq_events_total", "Events sent to the DLQ", ["topic", "reason"])
CONSUMER_LAG = Gauge(
    "inventory_consumer_lag", "Consumer lag in messages", ["topic"], multiprocess_mode="livemax"
)
CONSUMER_OFFSET_JUMPS = Counter(
    "inventory_consumer_offset_jumps_total",
    "Order events that arrived beyond the next expected offset of their partition "
    "(not processed: the partition was sought back)",
    ["topic"],
)
CONSUMER_OFFSET_GAPS = Counter(
    "inventory_consumer_offset_gaps_total",
    "Gaps in an order partition confirmed by a re-seek and skipped (no records there)",
    ["topic"],
)
CONSUMER_STALL_SEEKS = Counter(
    "inventory_consumer_stall_seeks_total",
    "Order partitions sought back because they stood short of their log end while their agent "
    "could take more (records dropped before they reached the agent)",
    ["topic"],
)
# retention (service/pruner.py)
PRUNED_ROWS = Counter("inventory_pruned_rows_total", "Rows deleted by retention", ["table"])
PRUNE_FAILURES = Counter(
    "inventory_prune_failures_total", "Pruning batches that failed (retried next round)", ["table"]
)
OLDEST_ROW_AGE = Gauge(
    "inventory_oldest_row_age_seconds",
    "Age of the oldest row that a retention removes, per table (the pruner's last round)",
    ["table"],
    multiprocess_mode="livemax",
)
RETENTION_SECONDS = Gauge(
    "inventory_retention_seconds",
    "The configured retention per table (absent: kept forever)",
    ["table"],
    multiprocess_mode="livemax",
)
PRUNER_LEADER = Gauge(
    "inventory_pruner_leader",
    "1 while this process holds the pruner lock",
    multiprocess_mode="livesum",
)
OUTBOX_BACKLOG = Gauge(
    "inventory_outbox_backlog", "Unpublished outbox rows", multiprocess_mode="livemax"
)
OUTBOX_RELAY_LEADER = Gauge(
    "inventory_outbox_relay_leader",
    "1 while this process holds the relay lock and publishes the outbox",
    multiprocess_mode="livesum",
)
OUTBOX_PUBLISHED = Counter("inventory_outbox_published_total", "Outbox rows published", ["topic"])
OUTBOX_PUBLISH_SECONDS = Histogram(
    "inventory_outbox_publish_latency_seconds",
    "Commit to publish latency of outbox rows",
    buckets=LAG_BUCKETS,
)

# expiry
EXPIRED = Counter("inventory_reservations_expired_total", "Orders expired", ["via"])
EXPIRY_LAG = Histogram(
    "inventory_expiry_lag_seconds", "now - expires_at when an order expired", buckets=LAG_BUCKETS
)
SWEEPER_CATCHES = Counter(
    "inventory_expiry_sweeper_catches_total", "Expiries the database sweeper had to do"
)
EXPIRY_SCHEDULED = Gauge(
    "inventory_expiry_scheduled",
    "Reservations in this worker's expiry timer index",
    multiprocess_mode="livesum",
)
EXPIRY_FAILURES = Counter(
    "inventory_expiry_failures_total",
    "Expiry work that failed and will be retried (timer, agent, sweeper)",
    ["via", "reason"],
)

# cache
CACHE_REQUESTS = Counter("inventory_cache_requests_total", "Cache lookups", ["result"])
CACHE_BREAKER_OPEN = Gauge(
    "inventory_cache_breaker_open", "1 while the Redis breaker is open", multiprocess_mode="livemax"
)
CACHE_PROPAGATION = Histogram(
    "inventory_cache_propagation_seconds",
    "DB commit (the event's `at`) to cache updated",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, *LAG_BUCKETS),
)
CACHE_WRITES = Counter(
    "inventory_cache_writes_total",
    "Stock states written to the cache: applied, stale (not newer), deferred (Redis down, "
    "replayed later), dropped (too many deferred), invalid (malformed event)",
    ["result"],
)
CACHE_NEAR_READS = Counter(
    "inventory_cache_near_reads_total",
    "SKU aggregates read from this process's invalidated copies (hit) or from Redis (miss)",
    ["result"],
)
CACHE_NEAR_INVALIDATIONS = Counter(
    "inventory_cache_near_invalidations_total", "Keys Redis reported changed (copies dropped)"
)
CACHE_NEAR_LIVE = Gauge(
    "inventory_cache_near_live",
    "1 while Redis reports invalidations to this process (its copies are in use)",
    multiprocess_mode="livemin",
)

# health and invariants
# a group of processes is ready when every one is (the supervisor's own value included)
READY = Gauge("inventory_ready", "1 when the service is ready", multiprocess_mode="livemin")
INVARIANT_VIOLATIONS = Gauge(
    "inventory_invariant_violations",
    "Problems found by the last invariant check",
    multiprocess_mode="livemax",
)
INVARIANT_LAST_CHECK = Gauge(
    "inventory_invariant_last_check_timestamp_seconds",
    "When the worker that runs the live invariant check last finished a round (Unix time)",
    multiprocess_mode="livemax",
)
