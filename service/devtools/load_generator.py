"""Synthetic order events for demos and benchmarks (``inventory loadgen``).

Publishes ``order-created`` / ``order-paid`` / ``order-cancelled`` events at a target rate:
a share of the items hit a few hot SKUs, paid and cancelled events refer to orders created
earlier in the run, and a share of the events is malformed on purpose (they must end up in
the DLQ). Events are generated from a seeded RNG, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from service.config import Settings
from service.domain.commands import OrderEventKind, UpdateStock
from service.domain.values import Sku, StockOperation

MALFORMED_KINDS = (
    "bad-json",
    "missing-items",
    "zero-quantity",
    "negative-quantity",
    "quantity-as-text",
    "over-limit",
    "empty-event-id",
)


@dataclass(frozen=True, slots=True)
class LoadConfig:
    count: int = 10_000  # events to publish
    rate: float = 1_000.0  # events per second; 0 = as fast as possible
    skus: int = 100
    hot_skus: int = 10
    hot_share: float = 0.5  # share of item lines that go to the hot SKUs
    created: float = 0.7  # the mix of events (weights)
    paid: float = 0.2
    cancelled: float = 0.1
    malformed: float = 0.0  # share of events replaced by a malformed one
    max_items: int = 3
    max_quantity: int = 3
    ttl_seconds: int | None = None
    prefix: str = "LOAD"
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    seed: int | None = None

    def sku(self, index: int) -> Sku:
        return Sku(f"{self.prefix}-SKU-{index:05d}")

    @property
    def all_skus(self) -> list[Sku]:
        return [self.sku(i) for i in range(self.skus)]


@dataclass(frozen=True, slots=True)
class OrderEvent:
    kind: OrderEventKind
    key: bytes
    value: bytes
    malformed: str | None = None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


class EventSource:
    """The run's events, in publishing order."""

    def __init__(self, config: LoadConfig) -> None:
        if config.skus < 1 or not 0 <= config.hot_skus <= config.skus:
            raise ValueError("need skus >= 1 and 0 <= hot_skus <= skus")
        self.config = config
        self._rng = random.Random(config.seed)
        self._open: list[str] = []  # created, not yet paid or cancelled
        self._orders = 0
        self._sequence = 0
        weights = (config.created, config.paid, config.cancelled)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("the mix weights must be >= 0 and not all 0")
        self._weights = weights

    def __iter__(self) -> Iterator[OrderEvent]:
        for _ in range(self.config.count):
            yield self.next()

    def next(self) -> OrderEvent:
        rng = self._rng
        kind = rng.choices(
            (OrderEventKind.CREATED, OrderEventKind.PAID, OrderEventKind.CANCELLED),
            self._weights,
        )[0]
        if kind is not OrderEventKind.CREATED and not self._open:
            kind = OrderEventKind.CREATED
        if kind is OrderEventKind.CREATED:
            order_id = self._new_order()
            body = self._created(order_id)
        else:
            order_id = self._open.pop(rng.randrange(len(self._open)))
            body = self._envelope(order_id)
            if kind is OrderEventKind.CANCELLED:
                body["reason"] = "customer changed their mind"
        if self.config.malformed and rng.random() < self.config.malformed:
            broken = MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]
            return OrderEvent(
                OrderEventKind.CREATED, order_id.encode(), self._break(broken, order_id), broken
            )
        return OrderEvent(kind, order_id.encode(), json.dumps(body).encode())

    def _new_order(self) -> str:
        self._orders += 1
        order_id = f"{self.config.prefix}-{self.config.run_id}-{self._orders}"
        self._open.append(order_id)
        return order_id

    def _envelope(self, order_id: str) -> dict[str, Any]:
        self._sequence += 1
        return {
            "event_id": f"{self.config.run_id}-{self._sequence}",
            "order_id": order_id,
            "occurred_at": _now(),
        }

    def _created(self, order_id: str) -> dict[str, Any]:
        body = self._envelope(order_id)
        body["items"] = [
            {
                "product_id": sku.product_id,
                "quantity": self._rng.randint(1, self.config.max_quantity),
            }
            for sku in self._pick_skus()
        ]
        if self.config.ttl_seconds is not None:
            body["ttl_seconds"] = self.config.ttl_seconds
        return body

    def _pick_skus(self) -> list[Sku]:
        config, rng = self.config, self._rng
        chosen: dict[int, None] = {}
        for _ in range(rng.randint(1, config.max_items)):
            cold = config.skus - config.hot_skus
            if config.hot_skus and (cold == 0 or rng.random() < config.hot_share):
                chosen[rng.randrange(config.hot_skus)] = None
            else:
                chosen[config.hot_skus + rng.randrange(cold)] = None
        return [config.sku(i) for i in chosen]

    def _break(self, how: str, order_id: str) -> bytes:
        if how == "bad-json":
            return b'{"event_id": "broken", "order_id": ' + order_id.encode()
        body = self._created(f"{order_id}-malformed")
        item = body["items"][0]
        if how == "missing-items":
            del body["items"]
        elif how == "zero-quantity":
            item["quantity"] = 0
        elif how == "negative-quantity":
            item["quantity"] = -1
        elif how == "quantity-as-text":
            item["quantity"] = str(item["quantity"])
        elif how == "over-limit":
            item["quantity"] = 10**12
        elif how == "empty-event-id":
            body["event_id"] = ""
        return json.dumps(body).encode()


class Progress:
    """Progress on stderr: a tqdm bar on a terminal, else a plain line every few seconds."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._shown_at = 0.0
        self._bar: tqdm[Any] | None = None
        if self.stream.isatty():
            self._bar = tqdm(
                total=self.total, file=self.stream, unit=" events", mininterval=0.2, leave=True
            )

    def update(self, done: int, *, final: bool = False) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if final:
                self._bar.close()
            return
        now = time.monotonic()
        if not final and now - self._shown_at < 2.0:
            return
        self._shown_at = now
        line = tqdm.format_meter(
            done, self.total, now - self.started, ncols=80, unit=" events", ascii=True
        )
        self.stream.write(line + "\n")
        self.stream.flush()


@dataclass
class LoadReport:
    published: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    order_ids: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.published.values())

    def summary(self) -> str:
        rate = self.total / self.seconds if self.seconds else 0.0
        parts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.published.items()))
        return f"published {self.total} events ({parts}) in {self.seconds:.1f}s: {rate:.0f}/s"


def topic_for(settings: Settings, kind: OrderEventKind) -> str:
    return {
        OrderEventKind.CREATED: settings.topic_order_created,
        OrderEventKind.PAID: settings.topic_order_paid,
        OrderEventKind.CANCELLED: settings.topic_order_cancelled,
        OrderEventKind.EXTENDED: settings.topic_order_extended,
        OrderEventKind.RETURNED: settings.topic_order_returned,
    }[kind]


@contextlib.asynccontextmanager
async def connected_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (so the broker answered), stopped on the way out, also when its
    start failed.

    The order topics are created first with the configured partition count: the producer's
    first send would otherwise have the broker auto-create them with its own default, and a
    worker refuses to start on topics whose counts differ."""
    from streams.app import ensure_topics

    await ensure_topics(settings, settings.order_topics)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-loadgen",
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    try:
        await producer.start()
        yield producer
    finally:
        await producer.stop()


async def publish(
    config: LoadConfig,
    settings: Settings,
    *,
    progress: Progress | None = None,
    keep_order_ids: bool = False,
    producer: AIOKafkaProducer | None = None,
    events: Iterable[OrderEvent] | None = None,
) -> LoadReport:
    """Publish the run's events at ``config.rate``; returns once the broker has them all.

    Without ``producer`` it connects one of its own. ``events``: the run's events made
    beforehand (``list(EventSource(config))``), so that making them is not timed."""
    if producer is None:
        async with connected_producer(settings) as own:
            return await publish(
                config,
                settings,
                progress=progress,
                keep_order_ids=keep_order_ids,
                producer=own,
                events=events,
            )
    report = LoadReport()
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    for n, event in enumerate(EventSource(config) if events is None else events, start=1):
        if config.rate > 0:
            due = started + n / config.rate
            delay = due - time.monotonic()
            if delay > 0.002:
                await asyncio.sleep(delay)
        pending.append(
            await producer.send(topic_for(settings, event.kind), event.value, key=event.key)
        )
        report.published[(event.malformed and "malformed") or event.kind.value] += 1
        if keep_order_ids and event.kind is OrderEventKind.CREATED and not event.malformed:
            report.order_ids.append(event.key.decode())
        if len(pending) >= 5_000:
            await asyncio.gather(*pending)
            pending.clear()
        if progress is not None:
            progress.update(n)
    await asyncio.gather(*pending)
    report.seconds = time.monotonic() - started
    if progress is not None:
        progress.update(report.total, final=True)
    return report


async def seed_stock(config: LoadConfig, settings: Settings, quantity: int) -> None:
    """SET every SKU of the run to ``quantity`` in the default warehouse (through the engine)."""
    from service.bootstrap import build

    async with build(settings) as container:
        async with container.db.connect():  # fail before the first command if unreachable
            pass
        results = await container.engine.execute_many(
            [
                UpdateStock(
                    sku=sku,
                    warehouse_id=settings.default_warehouse_id,
                    operation=StockOperation.SET,
                    quantity=quantity,
                    reason="loadgen seed",
                    actor="loadgen",
                )
                for sku in config.all_skus
            ]
        )
    for result in results:
        if isinstance(result, Exception):
            raise result
