"""The in-memory index of one worker's expiry schedule: order ids ordered by when they are due.

The durable schedule is the changelog-backed Faust table (``streams/expiry/agent.py``); this
index is what the timer reads each tick. It holds only the entries of the partitions this
worker owns, and is rebuilt from the table when partitions are assigned and recovered.

A heap of ``(due_at, seq, order_id)`` with lazy deletion: replacing or discarding an entry
leaves its old heap item behind, recognised as stale by its sequence number and dropped when
popped (and by a compaction when stale items outnumber live ones). Entries taken by the timer
are *in flight* until the engine's answer settles them (``done``) or puts them back
(``retry``); an entry that the agent discards or replaces meanwhile is not put back.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

COMPACT_ABOVE = 1024  # stale heap items tolerated before a compaction is considered


@dataclass(frozen=True, slots=True)
class Entry:
    order_id: str
    expires_at: float  # epoch seconds
    partition: int


@dataclass(slots=True)
class _Slot:
    entry: Entry
    due_at: float  # expires_at, or later when a retry is pending
    seq: int


class ExpirySchedule:
    def __init__(self) -> None:
        self._waiting: dict[str, _Slot] = {}
        self._in_flight: dict[str, Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._in_flight)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._waiting or order_id in self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def put(self, entry: Entry) -> None:
        """Schedule (or reschedule) an order; replaces whatever was there, in flight or not."""
        self._in_flight.pop(entry.order_id, None)
        self._push(entry, entry.expires_at)

    def discard(self, order_id: str) -> bool:
        """Forget an order (it reached a terminal state); True if it was scheduled."""
        waiting = self._waiting.pop(order_id, None)
        flying = self._in_flight.pop(order_id, None)
        self._maybe_compact()
        return waiting is not None or flying is not None

    def take_due(self, now: float, limit: int) -> list[Entry]:
        """Up to ``limit`` entries due at ``now``, earliest first; they are now in flight."""
        taken: list[Entry] = []
        heap = self._heap
        while heap and len(taken) < limit and heap[0][0] <= now:
            _, seq, order_id = heapq.heappop(heap)
            slot = self._waiting.get(order_id)
            if slot is None or slot.seq != seq:
                continue  # stale: replaced or discarded since it was pushed
            del self._waiting[order_id]
            self._in_flight[order_id] = slot.entry
            taken.append(slot.entry)
        return taken

    def done(self, order_id: str) -> Entry | None:
        """The engine settled an in-flight order; its entry, unless discarded or replaced."""
        return self._in_flight.pop(order_id, None)

    def retry(self, order_id: str, at: float) -> bool:
        """Put an in-flight order back, next due at ``at`` (False if it is no longer ours)."""
        entry = self._in_flight.pop(order_id, None)
        if entry is None:
            return False
        self._push(entry, at)
        return True

    def retain(self, partitions: Collection[int]) -> int:
        """Drop the entries of every other partition (revoked); returns how many went."""
        gone = [o for o, s in self._waiting.items() if s.entry.partition not in partitions]
        gone += [o for o, e in self._in_flight.items() if e.partition not in partitions]
        for order_id in gone:
            self.discard(order_id)
        return len(gone)

    def replace(self, entries: Iterable[Entry]) -> None:
        """Rebuild from scratch (after recovery): exactly these entries, none in flight."""
        self._waiting.clear()
        self._in_flight.clear()
        self._heap = []
        for entry in entries:
            self._waiting[entry.order_id] = _Slot(entry, entry.expires_at, next(self._seq))
        self._heap = [(s.due_at, s.seq, o) for o, s in self._waiting.items()]
        heapq.heapify(self._heap)

    def next_due(self) -> float | None:
        """When the earliest waiting entry falls due (stale heap items are skipped)."""
        heap = self._heap
        while heap:
            due_at, seq, order_id = heap[0]
            slot = self._waiting.get(order_id)
            if slot is not None and slot.seq == seq:
                return due_at
            heapq.heappop(heap)
        return None

    def entries(self) -> list[Entry]:
        """Every entry, waiting or in flight (for tests and diagnostics)."""
        return [s.entry for s in self._waiting.values()] + list(self._in_flight.values())

    def _push(self, entry: Entry, due_at: float) -> None:
        slot = _Slot(entry, due_at, next(self._seq))
        self._waiting[entry.order_id] = slot
        heapq.heappush(self._heap, (due_at, slot.seq, entry.order_id))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        heap = self._heap
        if len(heap) > COMPACT_ABOVE and len(heap) > 2 * len(self._waiting):
            self._heap = [(s.due_at, s.seq, o) for o, s in self._waiting.items()]
            heapq.heapify(self._heap)
