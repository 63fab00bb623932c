"""Structured logs: one JSON object per line on stderr (or plain text for a terminal).

``configure(settings)`` is idempotent: it replaces only the handler it installed itself, and
returns a function that restores the previous setup (for in-process runs: tests, ``dev``).
Fields passed with ``extra={...}`` land in the JSON object next to the message.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from service.config import Settings

# attributes every LogRecord has; anything else came in through ``extra=``
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler ``configure`` installed, so a second call replaces it."""


def configure(settings: Settings) -> Callable[[], None]:
    """Install the handler; returns a function that puts the previous root setup back."""
    root = logging.getLogger()
    previous_level, previous_handlers = root.level, list(root.handlers)
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # aiohttp logs every request at INFO; probes and scrapes would drown the service's lines
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Faust, mode and aiokafka narrate every rebalance, table and fetch at INFO, alembic every
    # readiness probe's revision check; their warnings and errors still come through.
    if root.level > logging.DEBUG:
        for noisy in ("faust", "mode", "aiokafka", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def restore() -> None:
        root.handlers[:] = previous_handlers
        root.setLevel(previous_level)

    return restore
