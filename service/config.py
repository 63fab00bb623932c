"""Settings: every knob of the service, read from the environment (prefix ``INVENTORY_``)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_FIELDS = (
    "topic_order_created",
    "topic_order_paid",
    "topic_order_cancelled",
    "topic_stock_changed",
    "topic_reservations",
    "topic_dlq",
)


class Role(StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", env_file=None, extra="ignore")

    # connections
    database_url: str = "postgresql+asyncpg://inventory:inventory@localhost:5432/inventory"
    redis_url: str = "redis://localhost:6379/0"
    kafka_bootstrap: str = "localhost:9092"

    # topics
    topic_order_created: str = "order-created"
    topic_order_cancelled: str = "order-cancelled"
    topic_order_paid: str = "order-paid"
    topic_stock_changed: str = "stock-changed"
    topic_reservations: str = "inventory-reservations"
    topic_dlq: str = "order-events-dlq"
    topic_partitions: int = Field(default=8, ge=1)

    # Faust / Kafka consumer group; production defaults, the embedded stack shortens them
    app_id: str = "inventory-service"
    broker_session_timeout_s: float = Field(default=60.0, gt=0)
    broker_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    broker_rebalance_timeout_s: float = Field(default=60.0, gt=0)
    broker_commit_interval_s: float = Field(default=2.8, gt=0)
    # Faust's consumer waits up to 1,500 ms per fetch; brokers that hold a fetch for its whole
    # wait (Tansu) want a short one. None keeps Faust's.
    kafka_fetch_max_wait_ms: int | None = Field(default=None, ge=1, le=60_000)

    # ports
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(default=4004, ge=0, le=65535)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=4002, ge=0, le=65535)

    # reservations
    default_ttl_seconds: int = Field(default=900, ge=1)
    min_ttl_seconds: int = Field(default=1, ge=1)
    max_ttl_seconds: int = Field(default=86_400, ge=1)
    allow_split: bool = True
    default_warehouse_id: str = "default"

    # group commit
    batch_max_size: int = Field(default=256, ge=1)
    batch_window_ms: float = Field(default=2.0, ge=0)

    # limits on input
    max_items_per_order: int = Field(default=100, ge=1)
    max_quantity_per_item: int = Field(default=100_000, ge=1)
    # at most the width of the id columns (varchar(128)): a longer id would reach the database
    max_id_length: int = Field(default=128, ge=1, le=128)
    max_reason_length: int = Field(default=512, ge=1)
    # the largest gRPC request (grpc.max_receive_message_length) and the largest order event
    # (a bigger one goes to the DLQ unparsed) accepted
    max_message_bytes: int = Field(default=1_048_576, ge=1024)

    # database
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    db_lock_timeout_ms: int = Field(default=2_000, ge=0)
    db_connect_timeout_s: float = Field(default=3.0, gt=0)

    # cache
    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(default=300, ge=1)
    cache_timeout_ms: float = Field(default=50.0, gt=0)
    cache_breaker_cooldown_s: float = Field(default=5.0, gt=0)
    # process-local copies of aggregates, invalidated by Redis (CLIENT TRACKING); 0 turns off
    cache_near_max_entries: int = Field(default=100_000, ge=0)
    cache_near_max_age_s: float = Field(default=1.0, gt=0)

    # outbox relay and expiry
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_interval_ms: float = Field(default=20.0, gt=0)
    outbox_retention_hours: float = Field(default=24.0, gt=0)
    expiry_tick_ms: float = Field(default=250.0, gt=0)
    expiry_sweep_interval_s: float = Field(default=60.0, gt=0)
    # the sweeper leaves orders this recently due to the timer table (not counted as catches)
    expiry_sweep_grace_s: float = Field(default=10.0, ge=0)

    # admin credential: sha256 hex digests of accepted bearer tokens
    admin_token_sha256: list[str] = Field(default_factory=list)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None

    # operations
    role: Role = Role.ALL
    # `serve --role api` only: this many processes share the gRPC port (SO_REUSEPORT) under
    # one supervisor that serves HTTP for the group (service/supervisor.py); 1: no supervisor
    api_processes: int = Field(default=1, ge=1)
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    dev_data_dir: Path = Path(".inventory-dev")

    @model_validator(mode="after")
    def _ttl_bounds_are_ordered(self) -> Settings:
        if not self.min_ttl_seconds <= self.default_ttl_seconds <= self.max_ttl_seconds:
            raise ValueError("need min_ttl_seconds <= default_ttl_seconds <= max_ttl_seconds")
        return self

    def as_env(self) -> dict[str, str]:
        """The ``INVENTORY_*`` variables that give a child process these settings."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is not None:
                text = json.dumps(value) if isinstance(value, list | dict) else str(value)
                env[f"INVENTORY_{name.upper()}"] = text
        return env

    def isolated(self, suffix: str, **changes: object) -> Settings:
        """The same settings with the app id (consumer group) and every topic suffixed: one
        more independent instance on a shared broker (tests, benchmarks, side-by-side envs)."""
        names = {field: f"{getattr(self, field)}-{suffix}" for field in ("app_id", *TOPIC_FIELDS)}
        return self.model_copy(update={**names, **changes})

    @property
    def order_topics(self) -> tuple[str, str, str]:
        return (self.topic_order_created, self.topic_order_paid, self.topic_order_cancelled)
