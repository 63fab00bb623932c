"""Stock-changed values, as the warmer agent (streams/warmer.py) takes them from Kafka, into the
cache: JSON decoded, then written through the versioned script (``StockCache.apply_payloads``).

``warm_many`` is a plain function, testable without Kafka.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from service import metrics
from service.cache.store import StockCache, WriteOutcome

log = logging.getLogger(__name__)


async def warm_many(cache: StockCache, values: Sequence[Any]) -> WriteOutcome:
    """Apply a batch of stock-changed values (JSON bytes, str or already decoded dicts) in one
    pipelined round trip; a version not newer than the cached one changes nothing."""
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
