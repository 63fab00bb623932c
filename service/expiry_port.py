"""What expiry needs from the engine, shared by both of its callers.

The timer table (``streams/expiry/``) expires reservations on time; the database sweeper
(``service/sweeper.py``) catches what it missed. Both hand order ids to the engine and count
what it expired the same way. The protocol lives here rather than in either caller because
``streams`` must not import the sweeper and ``service`` must not import ``streams``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from service import metrics
from service.domain.results import OrderResult
from service.domain.values import ResultStatus


class Expirer(Protocol):
    """What expires orders (the engine)."""

    async def expire(self, order_ids: Sequence[str]) -> list[OrderResult]: ...


def record_expired(results: Sequence[OrderResult], via: str, now: float) -> int:
    """Count the orders these results expired, and their lag; returns how many."""
    expired = 0
    for result in results:
        if result.published is ResultStatus.EXPIRED and not result.duplicate:
            expired += 1
            if result.expires_at is not None:
                metrics.EXPIRY_LAG.observe(max(now - result.expires_at.timestamp(), 0.0))
    if expired:
        metrics.EXPIRED.labels(via=via).inc(expired)
    return expired
