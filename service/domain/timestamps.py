"""Timestamps as the ledger and the events write them (ISO 8601)."""

from __future__ import annotations

from datetime import datetime


class IsoFormats(dict[datetime, str]):
    """``datetime.isoformat``, each distinct value formatted once.

    A batch's orders mostly share a TTL, hence an expiry time: the planner (event payloads)
    and ``db/ledger.py`` (the batch's rows) format each one once per batch.
    """

    def __call__(self, at: datetime) -> str:
        formatted = self.get(at)
        if formatted is None:
            formatted = self[at] = at.isoformat()
        return formatted
