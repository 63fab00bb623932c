"""The Faust app factory and the topics of the service. Nothing here runs at import time."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.config import Settings
from service.failures import CannotRun
from streams.kafka_transport import app_class
from streams.offsets import OffsetGuard

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def broker_urls(settings: Settings) -> list[str]:
    return [
        f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",") if host.strip()
    ]


def create_app(settings: Settings, guard: OffsetGuard | None = None) -> faust.App:
    """A Faust app configured from Settings; call it inside the event loop that will run it.

    ``guard`` keeps the offsets of the order topics (a fresh one when not given).
    """
    guard = guard or OffsetGuard(settings.order_topics)
    return app_class(settings.kafka_fetch_max_wait_ms, guard)(
        settings.app_id,
        broker=broker_urls(settings),
        # Nothing needs rocksdb: the order agents keep no state (PostgreSQL does). The
        # expiry timer table is changelog-backed and restores into memory.
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_commit_interval=settings.broker_commit_interval_s,
        # acks=all; no idempotent producer (Tansu rejects InitProducerId)
        producer_acks=-1,
        stream_wait_empty=True,
        # Faust creates its data directories on start; with memory stores they stay empty.
        datadir=str(Path(tempfile.gettempdir()) / f"inventory-faust-{settings.app_id}"),
    )


@dataclass(frozen=True, slots=True)
class Topics:
    """The service's topics, created at start when missing."""

    order_created: str
    order_paid: str
    order_cancelled: str
    order_extended: str
    order_returned: str
    stock_changed: str
    reservations: str
    stock_alerts: str
    dlq: str
    partitions: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(
            order_created=settings.topic_order_created,
            order_paid=settings.topic_order_paid,
            order_cancelled=settings.topic_order_cancelled,
            order_extended=settings.topic_order_extended,
            order_returned=settings.topic_order_returned,
            stock_changed=settings.topic_stock_changed,
            reservations=settings.topic_reservations,
            stock_alerts=settings.topic_stock_alerts,
            dlq=settings.topic_dlq,
            partitions=settings.topic_partitions,
        )

    @property
    def all(self) -> tuple[str, ...]:
        return (
            self.order_created,
            self.order_paid,
            self.order_cancelled,
            self.order_extended,
            self.order_returned,
            self.stock_changed,
            self.reservations,
            self.stock_alerts,
            self.dlq,
        )


class TopicLayoutError(CannotRun):
    """The co-partitioned topics disagree on their partition count: the worker must not start."""


def _admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(settings.broker_session_timeout_s * 1000) + 5_000,
    )


async def ensure_topics(settings: Settings, names: tuple[str, ...] | None = None) -> None:
    """Create the topics that do not exist yet (Settings.topic_partitions, replication 1).

    Topics are only ever created here, with the configured partition count: a client that
    merely touches a missing topic would have the broker create it with its own default.
    """
    topics = names or Topics.from_settings(settings).all
    admin = _admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(topics) if name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(name, settings.topic_partitions, 1) for name in missing]
        )
        for name, code, message in _topic_errors(response):
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"could not create topic {name}: {code} {message}")
        log.info("created topics %s with %d partitions", missing, settings.topic_partitions)
    finally:
        await admin.close()


def co_partitioned(settings: Settings) -> tuple[str, ...]:
    """The topics that must have one partition count: an order's events and its reservation
    results land on the same partition number, which the expiry timer table relies on."""
    return (*settings.order_topics, settings.topic_reservations)


async def check_topic_layout(settings: Settings) -> None:
    """Raise ``TopicLayoutError`` unless the co-partitioned topics all have
    ``Settings.topic_partitions`` partitions (call after ``ensure_topics``)."""
    names = co_partitioned(settings)
    admin = _admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    counts = {str(t["topic"]): len(t["partitions"]) for t in described if t["topic"] in names}
    problem = layout_problem(counts, names, settings.topic_partitions)
    if problem is not None:
        raise TopicLayoutError(problem)


def layout_problem(counts: dict[str, int], names: tuple[str, ...], partitions: int) -> str | None:
    """One line saying what is wrong with the partition counts, or None."""
    missing = [name for name in names if name not in counts]
    if missing:
        return f"topics {', '.join(missing)} do not exist (the worker creates them at start)"
    if len(set(counts.values())) > 1:
        found = ", ".join(f"{name} {counts[name]}" for name in names)
        return (
            f"topics must have the same partition count, found {found}: an order's events and "
            "its reservations must land on the same partition number; recreate the topics that "
            "differ (a topic touched before the first worker started is auto-created with the "
            "broker's default count)"
        )
    found_count = counts[names[0]]
    if found_count != partitions:
        return (
            f"topics have {found_count} partitions, INVENTORY_TOPIC_PARTITIONS is {partitions}: "
            f"set INVENTORY_TOPIC_PARTITIONS={found_count} (the expiry table's changelog is "
            "created with it)"
        )
    return None


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    errors = getattr(response, "topic_errors", [])
    return [(str(e[0]), int(e[1]), e[2] if len(e) > 2 else None) for e in errors]
