"""Ids for the rows the engine creates."""

from __future__ import annotations

import itertools
import uuid


class IdSource:
    """UUID-shaped ids, unique without a random draw each: a random 74-bit prefix per engine
    and a counter. uuid4() per reservation cost more than the allocation itself."""

    def __init__(self) -> None:
        p = uuid.uuid4().hex[:20]
        self._prefix = f"{p[:8]}-{p[8:12]}-4{p[13:16]}-{p[16:20]}-"
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"
