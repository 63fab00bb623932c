"""What the cache's scripts take and return.

``StockState``, one stock row at a version (from a stock-changed payload or a read of
PostgreSQL), becomes the arguments of ``versioned_write.lua``; ``CachedSku`` is one SKU
aggregate as ``multi_read.lua`` returns it, and ``parse_line`` turns one of its lines back
into the ``StockLevel`` PostgreSQL would have answered.

A row is stored as ``available|reserved|total|version|safety_stock|reorder_point|
backorder_limit|backordered|stock_id`` (``reorder_point`` empty for none; ``available`` and
``total`` below zero on a backordered row); ``multi_read.lua`` appends ``|warehouse``. The
key prefix names this format (``keys.py``): a line in any other shape is not read as
defaults but refused (``parse_line`` gives None, a miss), since defaults would report a row's
safety stock as sellable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.events import parse_stock_changed
from service.domain.results import StockLevel
from service.domain.snapshot import StockRow
from service.domain.values import DEFAULT_POLICY, Sku, StockPolicy

FIELDS_PER_LINE = 10  # the nine stored values, then the warehouse


@dataclass(frozen=True, slots=True)
class StockState:
    """The absolute state of one stock row at a version: what stock-changed carries."""

    sku: Sku
    warehouse_id: str
    available: int  # below zero on a backordered row
    reserved: int
    total: int
    version: int
    stock_id: str = ""
    at: float | None = None  # commit time (epoch seconds), for the propagation metric
    policy: StockPolicy = DEFAULT_POLICY
    backordered: int = 0

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
            policy=StockPolicy(level.safety_stock, level.reorder_point, level.backorder_limit),
            backordered=level.backordered,
        )

    @classmethod
    def from_row(cls, row: StockRow, at: float) -> StockState:
        """A row as the engine committed it (what its stock-changed payload says, unparsed)."""
        levels = row.levels
        return cls(
            row.sku,
            row.warehouse_id,
            levels.available,
            levels.reserved,
            levels.total,
            row.version,
            row.stock_id,
            at,
            row.policy,
            row.backordered,
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockState:
        """A stock-changed payload (``service/domain/events.py`` parses it); ``MalformedEvent``
        (a ValueError) when it cannot be applied. An event from before policies has the
        default policy and nothing backordered, as the parser reads it."""
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
            change.policy,
            change.backordered,
        )

    def arg(self) -> str:
        """The row as ``versioned_write.lua`` reads it: one string, the warehouse last."""
        policy = self.policy
        reorder_point = "" if policy.reorder_point is None else policy.reorder_point
        at = "" if self.at is None else repr(self.at)
        return (
            f"{self.available}|{self.reserved}|{self.total}|{self.version}|{self.stock_id}|{at}|"
            f"{policy.safety_stock}|{reorder_point}|{policy.backorder_limit}|{self.backordered}|"
            f"{self.warehouse_id}"
        )


@dataclass(frozen=True, slots=True)
class CachedSku:
    """A SKU's aggregate as stored. Only a complete one may answer a read.

    ``lines`` are the rows as ``multi_read.lua`` sent them, one per warehouse, parsed by the
    reader that needs them (``parse_line``; ``service/cache/queries.py`` memoises the result
    by the lines' text).
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


def parse_line(sku: Sku, line: str) -> StockLevel | None:
    """One line of a ``CachedSku``: the stock row, every field as PostgreSQL holds it; None
    for a line not in this format (a miss, never defaults)."""
    parts = line.split("|", FIELDS_PER_LINE - 1)  # the warehouse id is last: it may hold "|"
    if len(parts) != FIELDS_PER_LINE:
        return None
    (
        available,
        reserved,
        total,
        version,
        safety_stock,
        reorder_point,
        backorder_limit,
        backordered,
        stock_id,
        warehouse_id,
    ) = parts
    try:
        return StockLevel(
            stock_id,
            sku,
            warehouse_id,
            int(available),
            int(reserved),
            int(total),
            int(version),
            int(safety_stock),
            None if reorder_point == "" else int(reorder_point),
            int(backorder_limit),
            int(backordered),
        )
    except ValueError:
        return None
