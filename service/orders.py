"""GetOrder: an order as PostgreSQL holds it, with its history (never the cache).

The cache holds stock levels only; an order's state, lines and history are read from the
ledger, so GetOrder answers what the last committed batch left, the transition it just made
included.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from db.order_reads import load_order_view, load_tombstone
from service.db_errors import read_retrying_once
from service.domain.errors import NotFound
from service.domain.results import OrderView


class OrderQueries:
    def __init__(self, db: AsyncEngine) -> None:
        # load_order_view is one statement (one snapshot): no transaction, no BEGIN round trip
        self._reads = db.execution_options(isolation_level="AUTOCOMMIT")

    async def get_order(self, order_id: str) -> OrderView:
        """The order ``order_id``; ``NotFound`` if there is none, or if retention pruned it
        (the message says so, with its final state)."""
        view = await self._load(order_id)
        if view is None:
            tombstone = await read_retrying_once(
                self._reads, lambda conn: load_tombstone(conn, order_id)
            )
            if tombstone is not None:
                state, pruned_at = tombstone
                raise NotFound(
                    f"order {order_id} was pruned by retention on {pruned_at:%Y-%m-%d} "
                    f"(final state {state})"
                )
            raise NotFound(f"unknown order {order_id}")
        return view

    async def _load(self, order_id: str) -> OrderView | None:
        return await read_retrying_once(self._reads, lambda conn: load_order_view(conn, order_id))
