"""Settings: every knob of the service, read from the environment (prefix ``INVENTORY_``).

Every field is validated when ``Settings()`` is built; ``explain`` turns the failure into one
line naming each variable, its value and what is expected (``inventory`` prints it, exit 2).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from db.session import Database
from service.event_loop import EventLoopChoice

TOPIC_FIELDS = (
    "topic_order_created",
    "topic_order_paid",
    "topic_order_cancelled",
    "topic_order_extended",
    "topic_order_returned",
    "topic_stock_changed",
    "topic_reservations",
    "topic_stock_alerts",
    "topic_dlq",
)


class Role(StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


_KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_ADDRESS = re.compile(r"[^\s,:/]+:\d{1,5}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# SQLAlchemy picks psycopg for a bare postgresql:// (what psql and the banner print)
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")


def _seconds_or_iso(value: Any) -> Any:
    """A variable's ``60`` or ``0.5`` is seconds (pydantic reads only ISO 8601 from text)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value.strip()
    return value


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("expected a positive duration: seconds (e.g. 60) or ISO 8601 (e.g. P30D)")
    return value


def _kafka_name(value: str) -> str:
    if not _KAFKA_NAME.fullmatch(value):
        raise ValueError("expected 1 to 249 letters, digits, '.', '_' or '-' (a Kafka name)")
    return value


def _host(value: str) -> str:
    if not value or any(c.isspace() or c in "/," for c in value):
        raise ValueError("expected a host name or IP address to bind, e.g. 0.0.0.0 or 127.0.0.1")
    return value


def _asyncpg_url(value: str) -> str:
    scheme, separator, rest = value.partition("://")
    if not separator or not rest or scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            "expected postgresql://user[:password]@host[:port]/database "
            "(or postgresql+asyncpg://...)"
        )
    return f"postgresql+asyncpg://{rest}"


def _redis_url(value: str) -> str:
    scheme, separator, rest = value.partition("://")
    if not separator or not rest or scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://host[:port][/db] (or rediss://, unix://)")
    return value


def _bootstrap(value: str) -> str:
    addresses = value.split(",")
    if not all(
        _ADDRESS.fullmatch(a.strip()) and 0 < int(a.rsplit(":")[1]) < 65536 for a in addresses
    ):
        raise ValueError("expected host:port[,host:port...], e.g. localhost:9092")
    return value


def _log_level(value: str) -> str:
    if value.upper() not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(_LOG_LEVELS)}")
    return value.upper()


def _sha256_digests(value: Any) -> list[str]:
    """A JSON list (the variable) or a list of hex digests; case and spaces do not matter."""
    expected = (
        "expected a JSON list of SHA-256 hex digests (64 hex characters each), e.g. "
        "'[\"<sha256 hex of your token>\"]'"
    )
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(expected) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(expected)
    digests = [digest.strip().lower() for digest in value if digest.strip()]
    if not all(_SHA256_HEX.fullmatch(digest) for digest in digests):
        raise ValueError(expected)
    return digests


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError("expected a readable file (PEM); there is none at that path")
    return value


def _folder(value: Path) -> Path:
    if value.exists() and not value.is_dir():
        raise ValueError("expected a folder; that path is a file")
    return value


KafkaName = Annotated[str, AfterValidator(_kafka_name)]
Host = Annotated[str, AfterValidator(_host)]
PemFile = Annotated[Path | None, AfterValidator(_existing_file)]
# seconds (``60``, ``0.5``) or ISO 8601 (``P30D``, ``PT1M``), pydantic's timedelta forms
Duration = Annotated[
    timedelta, BeforeValidator(_seconds_or_iso), AfterValidator(_positive_duration)
]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVENTORY_", env_file=None, extra="ignore")

    # connections
    database_url: Annotated[str, AfterValidator(_asyncpg_url)] = (
        "postgresql+asyncpg://inventory:inventory@localhost:5432/inventory"
    )
    redis_url: Annotated[str, AfterValidator(_redis_url)] = "redis://localhost:6379/0"
    kafka_bootstrap: Annotated[str, AfterValidator(_bootstrap)] = "localhost:9092"

    # topics
    topic_order_created: KafkaName = "order-created"
    topic_order_cancelled: KafkaName = "order-cancelled"
    topic_order_paid: KafkaName = "order-paid"
    topic_order_extended: KafkaName = "order-extended"
    topic_order_returned: KafkaName = "order-returned"
    topic_stock_changed: KafkaName = "stock-changed"
    topic_reservations: KafkaName = "inventory-reservations"
    topic_stock_alerts: KafkaName = "stock-alerts"
    topic_dlq: KafkaName = "order-events-dlq"
    topic_partitions: int = Field(default=8, ge=1)

    # Faust / Kafka consumer group; production defaults, the embedded stack shortens them
    app_id: KafkaName = "inventory-service"
    broker_session_timeout_s: float = Field(default=60.0, gt=0)
    broker_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    broker_rebalance_timeout_s: float = Field(default=60.0, gt=0)
    broker_commit_interval_s: float = Field(default=2.8, gt=0)
    # Faust's consumer waits up to 1,500 ms per fetch; brokers that hold a fetch for its whole
    # wait (Tansu) want a short one. None keeps Faust's.
    kafka_fetch_max_wait_ms: int | None = Field(default=None, ge=1, le=60_000)
    # an order partition that stands short of its log end this long while its agent could take
    # more is sought back to the next offset it expects (streams/offsets.py, StallWatch)
    consumer_stall_s: float = Field(default=10.0, gt=0)

    # ports
    grpc_host: Host = "0.0.0.0"
    grpc_port: int = Field(default=4004, ge=0, le=65535)
    http_host: Host = "0.0.0.0"
    http_port: int = Field(default=4002, ge=0, le=65535)

    # reservations
    default_ttl_seconds: int = Field(default=900, ge=1)
    min_ttl_seconds: int = Field(default=1, ge=1)
    max_ttl_seconds: int = Field(default=86_400, ge=1)
    allow_split: bool = True
    default_warehouse_id: str = Field(default="default", min_length=1, max_length=128)

    # group commit
    batch_max_size: int = Field(default=256, ge=1)
    batch_window_ms: float = Field(default=0.0, ge=0)
    # 2: the next batch forms when the one before sends its COMMIT, and begins while it commits,
    # unless that one has an RPC's caller (it then runs alone); 1: always when it has finished
    batches_in_flight: int = Field(default=2, ge=1, le=2)

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

    # retention (docs/operations.md, Data lifecycle): what the pruner (service/pruner.py)
    # deletes, and how it paces itself. None keeps stock movements forever.
    dedup_window: Duration = timedelta(days=7)
    order_retention: Duration = timedelta(days=30)
    tombstone_retention: Duration = timedelta(days=30)
    movement_retention: Duration | None = None
    prune_interval_s: float = Field(default=60.0, gt=0)
    prune_batch_size: int = Field(default=1_000, ge=1, le=100_000)
    prune_pause_ms: float = Field(default=50.0, ge=0)
    # stock_movements partitions created ahead of the current month
    movement_partitions_ahead: int = Field(default=2, ge=1, le=24)

    # the live invariant check (service/invariant_monitor.py): stock rows changed since the
    # last round, and every row at the slower cadence
    invariant_check_interval_s: float = Field(default=30.0, gt=0)
    invariant_full_check_interval_s: float = Field(default=900.0, gt=0)

    # admin credential: sha256 hex digests of accepted bearer tokens
    admin_token_sha256: Annotated[list[str], NoDecode, BeforeValidator(_sha256_digests)] = Field(
        default_factory=list
    )
    tls_cert_file: PemFile = None
    tls_key_file: PemFile = None
    tls_client_ca_file: PemFile = None

    # operations
    role: Role = Role.ALL
    # `serve --role api` only: this many processes share the gRPC port (SO_REUSEPORT) under
    # one supervisor that serves HTTP for the group (service/supervisor.py); 1: no supervisor
    api_processes: int = Field(default=1, ge=1)
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # what `serve` runs on (service/event_loop.py); asyncio: the standard library's loop
    event_loop: EventLoopChoice = "uvloop"
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    dev_data_dir: Annotated[Path, AfterValidator(_folder)] = Path(".inventory-dev")

    @model_validator(mode="after")
    def _ttl_bounds_are_ordered(self) -> Settings:
        ttls = (self.min_ttl_seconds, self.default_ttl_seconds, self.max_ttl_seconds)
        if not ttls[0] <= ttls[1] <= ttls[2]:
            raise ValueError(
                "expected INVENTORY_MIN_TTL_SECONDS <= INVENTORY_DEFAULT_TTL_SECONDS <= "
                f"INVENTORY_MAX_TTL_SECONDS, got {ttls[0]}, {ttls[1]}, {ttls[2]}"
            )
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
    def order_topics(self) -> tuple[str, str, str, str, str]:
        """The consumed order topics: guarded by the OffsetGuard, co-partitioned with
        ``topic_reservations``, read by ``inventory audit``."""
        return (
            self.topic_order_created,
            self.topic_order_paid,
            self.topic_order_cancelled,
            self.topic_order_extended,
            self.topic_order_returned,
        )

    def database(self, role: str | None = None) -> Database:
        """The plain connection values ``db`` takes; ``role`` names the connection in
        ``pg_stat_activity`` (``<app id>-<role>``)."""
        return Database(
            url=self.database_url,
            application_name=self.app_id if role is None else f"{self.app_id}-{role}",
            pool_size=self.db_pool_size,
            max_overflow=self.db_max_overflow,
            connect_timeout_s=self.db_connect_timeout_s,
            statement_timeout_ms=self.db_statement_timeout_ms,
            lock_timeout_ms=self.db_lock_timeout_ms,
        )


_SECRET_IN_URL = re.compile(r"(://[^:/@]+:)[^@]+@")
_PHRASES = (
    ("Value error, ", ""),
    ("Input should be ", "expected "),
    ("String should ", "expected to "),
)


def explain(error: ValidationError) -> str:
    """One line for a bad configuration: each variable, its value and what is expected."""
    parts = []
    for item in error.errors():
        message = item["msg"]
        for phrase, replacement in _PHRASES:
            message = message.replace(phrase, replacement, 1)
        if not item["loc"]:  # a rule across fields names its variables itself
            parts.append(message)
            continue
        variable = f"INVENTORY_{str(item['loc'][0]).upper()}"
        parts.append(f"{variable}={_shown(item['input'])}: {message}")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _SECRET_IN_URL.sub(r"\1***@", text)
    return repr(text if len(text) <= 80 else text[:77] + "...")
