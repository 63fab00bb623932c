"""The cache warmer: the ``cache-warmer`` Faust agent that hands ``stock-changed`` to the cache.

``register_warmer`` consumes the topic with ``concurrency=1``, in batches from ``take``, and
gives each batch to ``warm_many`` (service/cache/warming.py), everything caught inside the loop.
The cache is disposable, so an event that cannot be written is never retried by Kafka: the
cache keeps the newest state per row and replays it when Redis answers again (bounded; beyond
that the TTL and the read-through repair it), and a malformed event is counted and skipped.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.types import StreamT

from service import metrics
from service.cache import StockCache, warm_many
from streams.kafka_transport import RawSchema

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WITHIN_S = 0.02


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
