"""What the cache's scripts take and return.

``StockState``, one stock row at a version (from a stock-changed payload or a read of
PostgreSQL), becomes the arguments of ``versioned_write.lua``; ``CachedSku`` is one SKU
aggregate as ``multi_read.lua`` returns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.events import parse_stock_changed
from service.domain.results import StockLevel
from service.domain.values import Sku


@dataclass(frozen=True, slots=True)
class StockState:
    """The absolute state of one stock row at a version: what stock-changed carries."""

    sku: Sku
    warehouse_id: str
    available: int
    reserved: int
    total: int
    version: int
    stock_id: str = ""
    at: float | None = None  # commit time (epoch seconds), for the propagation metric

    @classmethod
    def from_level(cls, level: StockLevel) -> StockState:
        return cls(
            level.sku,
            level.warehouse_id,
            level.available,
            level.reserved,
            level.total,
            level.version,
            level.stock_id,
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockState:
        """A stock-changed payload (``service/domain/events.py`` parses it); ``MalformedEvent``
        (a ValueError) when it cannot be applied."""
        change = parse_stock_changed(payload)
        return cls(
            change.sku,
            change.warehouse_id,
            change.available,
            change.reserved,
            change.total,
            change.version,
            change.stock_id,
            None if change.at is None else change.at.timestamp(),
        )

    def args(self) -> list[str | int]:
        """The row's values in the order ``versioned_write.lua`` reads them."""
        return [
            self.warehouse_id,
            self.available,
            self.reserved,
            self.total,
            self.version,
            self.stock_id,
            "" if self.at is None else repr(self.at),
        ]


@dataclass(frozen=True, slots=True)
class CachedSku:
    """A SKU's aggregate as stored. Only a complete one may answer a read.

    ``lines`` are the rows as ``multi_read.lua`` sent them
    (``available|reserved|total|version|stock_id|warehouse``), parsed by the reader that
    needs them (``service/cache/queries.py`` builds its answer straight from them).
    """

    complete: bool
    lines: tuple[str, ...]

    @classmethod
    def parse(cls, blob: str) -> CachedSku | None:
        """From one string of ``multi_read.lua``; None when the SKU is not cached."""
        if not blob:
            return None
        head, *lines = blob.split("\n")
        return cls(head == "1", tuple(lines))
