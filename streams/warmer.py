"""The cache warmer: ``stock-changed`` → Redis, through the cache's versioned write script.

``warm_many`` applies a batch of events (one pipelined round trip); it is a plain function,
testable without Kafka. ``register_warmer`` wraps it in a Faust agent:
``concurrency=1``, batches from ``take``, everything caught inside the loop. The cache is
disposable, so an event that cannot be written is never retried by Kafka: the cache keeps the
newest state per row and replays it when Redis answers again (bounded; beyond that the TTL and
the read-through repair it), and a malformed event is counted and skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from faust.types import StreamT

from service import metrics
from service.cache import StockCache, WriteOutcome
from streams.kafka_transport import RawSchema

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WITHIN_S = 0.02


async def warm_many(cache: StockCache, values: Sequence[Any]) -> WriteOutcome:
    """Apply a batch of stock-changed values (JSON bytes, str or already decoded dicts); a
    version not newer than the cached one changes nothing."""
    payloads: list[Mapping[str, Any]] = []
    for value in values:
        payload = _decode(value)
        if payload is None:
            metrics.CACHE_WRITES.labels("invalid").inc()
        else:
            payloads.append(payload)
    return await cache.apply_payloads(payloads)


def _decode(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        log.warning("skipping a stock-changed value that is not JSON")
        return None
    return decoded if isinstance(decoded, dict) else None


def register_warmer(
    app: faust.App,
    topic: faust.types.TopicT | str,
    cache: StockCache,
    *,
    batch_size: int = BATCH_SIZE,
    within_s: float = BATCH_WITHIN_S,
) -> faust.types.AgentT[Any]:
    """The ``cache-warmer`` agent on ``topic`` (a name or a Faust topic of any serializer)."""
    channel = app.topic(topic, schema=RawSchema()) if isinstance(topic, str) else topic

    async def cache_warmer(stream: StreamT[Any]) -> None:
        async for values in stream.take(batch_size, within=within_s):
            try:
                await warm_many(cache, values)
            except Exception:  # never let the agent die (and ack its batch) over the cache
                metrics.CACHE_WRITES.labels("dropped").inc(len(values))
                log.exception("cache warmer: a batch of %d events was not applied", len(values))

    return app.agent(channel, name="cache-warmer", concurrency=1)(cache_warmer)
