"""GetOrder: an order as PostgreSQL holds it, with its history (never the cache).

The cache holds stock levels only; an order's state, lines and history are read from the
ledger, so GetOrder answers what the last committed batch left, the transition it just made
included.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from db.order_reads import load_order_view
from service.db_errors import Failure, classify
from service.domain.errors import NotFound, Unavailable
from service.domain.results import OrderView


class OrderQueries:
    def __init__(self, db: AsyncEngine) -> None:
        # load_order_view is one statement (one snapshot): no transaction, no BEGIN round trip
        self._reads = db.execution_options(isolation_level="AUTOCOMMIT")

    async def get_order(self, order_id: str) -> OrderView:
        """The order ``order_id``; ``NotFound`` if there is none."""
        view = await self._load(order_id)
        if view is None:
            raise NotFound(f"unknown order {order_id}")
        return view

    async def _load(self, order_id: str) -> OrderView | None:
        for attempt in (1, 2):  # the second try gets a fresh connection if the first died
            try:
                async with self._reads.connect() as conn:
                    return await load_order_view(conn, order_id)
            except Exception as error:
                if classify(error) is Failure.BUG:
                    raise
                if attempt == 2:
                    raise Unavailable("database unavailable") from error
        raise AssertionError("unreachable")
