"""The circuit breaker in front of Redis: stop trying for a while after failures.

Closed: every call goes to Redis. After ``threshold`` consecutive failures it opens for
``cooldown_s``: calls are refused at once (the caller reads PostgreSQL instead). Then it is
half-open: one call at a time is let through as a probe; its success closes the breaker, its
failure opens it for another cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

from service import metrics


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        cooldown_s: float,
        *,
        threshold: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cooldown_s = cooldown_s
        self._threshold = threshold
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._state = BreakerState.CLOSED
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open state only one probe at a time may."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._state = BreakerState.CLOSED
            metrics.CACHE_BREAKER_OPEN.set(0)

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._threshold:
            self._open()

    def abandon(self) -> None:
        """A call was cancelled by its caller: it proves nothing either way."""
        self._probing = False

    def _open(self) -> None:
        self._probing = False
        self._state = BreakerState.OPEN
        self._open_until = self._clock() + self._cooldown_s
        metrics.CACHE_BREAKER_OPEN.set(1)
