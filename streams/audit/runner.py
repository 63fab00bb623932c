"""``audit(settings)``: read the window from Kafka, look it up in the ledger, compare."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from db import audit_sql
from db.session import create_engine
from service.config import Settings
from streams.audit.report import AuditReport, reconcile
from streams.audit.window import CannotAudit, one_line, read_window


async def audit(
    settings: Settings,
    *,
    since: datetime | None = None,
    start_offsets: Mapping[tuple[str, int], int] | None = None,
) -> AuditReport:
    """Reconcile the order topics (and the DLQ) with the ledger; raise ``CannotAudit`` when
    the broker or the database cannot be reached or an order topic does not exist.

    ``since`` (timezone-aware) skips records older than it; ``start_offsets`` maps
    ``(topic, partition)`` to the first offset to read. The window ends at each partition's
    high watermark read at the start.
    """
    db = create_engine(settings.database())
    try:
        try:
            await audit_sql.ping(db)  # before a long read, not after it
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CannotAudit(f"database: {one_line(exc)}") from exc
        window = await read_window(settings, since=since, start_offsets=start_offsets)
        # after the group's offsets were read (read_window): see streams/audit/window.py
        try:
            processed = await audit_sql.processed(db, window.event_keys())
            states = await audit_sql.order_states(db, window.created_orders())
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise CannotAudit(f"database: {one_line(exc)}") from exc
    finally:
        await db.dispose()
    return reconcile(window, processed, states)
