"""Which order events may be processed, and which offsets may be committed, per partition.

Faust delivers messages to a stream that were fetched before a rebalance or before the seek
to the committed offset (stale prefetch), and its commit arithmetic treats the offsets it
skipped over as done ("gap filling"). Either loses events silently: their offsets are
committed, nothing processed them. ``OffsetGuard`` makes both impossible for the topics it
guards, without trusting Faust's bookkeeping:

- **Contiguity on the way in.** At every seek to the committed position (``assign``), a
  partition's *expected* offset is that position. An event at the expected offset is
  admitted; one below it was admitted already (a re-delivery) and is dropped; one beyond it is
  a *jump*: it is dropped and the partition is sought back to the expected offset. Until the
  expected offset arrives, every later event beyond the jump is dropped and sought back again:
  Faust's fetch loop keeps handing over what it fetched before the seek, and records each
  hand-off as its read position, which would make it discard the re-fetched records. A jump
  that comes back at the same offset after each of two seeks back is a real gap in the log
  (compaction, transaction markers, retention) and is accepted. Only a delivery after a seek
  that went out counts (``sought``): Faust can hand over the same stale record twice, in one
  batch, before the seek is sent, and taking that for the broker's answer skipped the 40
  records of a rolling restart (``tests/chaos/test_scaling.py``). Two, because a stale copy may
  also still be queued when the seek goes out; the broker answers every seek the same way.
- **Commits from settled offsets only.** The committable offset of a partition is its
  *frontier*: every offset below it was settled (its effect is durable in PostgreSQL) or is a
  confirmed gap. A settled offset beyond an unsettled one waits.
- **No partition stops short of its log end** (``StallWatch``). A jump is only seen when a
  later record arrives: records that Faust fetched and dropped before they reached the agent,
  on a partition that then goes quiet, would wait for the next rebalance. A partition whose
  log end is past its expected offset, and whose expected offset stood still for a while
  although its agent was free to take more, is sought back to the expected offset.
- **How far behind** (``lag_by_label``): the records between each partition's committed
  offset and its log end, per topic, for the consumer lag gauge of every topic a worker
  consumes (the order topics, the expiry agent's, the cache warmer's).

Pure bookkeeping: no Kafka, no Faust. ``streams/kafka_transport.py`` wires it into the
consumer (seeks, commits), ``streams/agents.py`` into the order agents (admit, settle) and
``streams/worker.py`` runs the ``StallWatch`` once a second and sets the lag gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Protocol

GAP_CONFIRMATIONS = 2  # seeks back that the jump must come back after, to be a real gap


class Verdict(Enum):
    ADMIT = "admit"  # process it
    DROP = "drop"  # admitted before, or stale: never process, never commit
    SEEK = "seek"  # a jump: drop it and seek the partition back to ``Decision.seek_to``
    RESEEK = "reseek"  # beyond a jump already being sought back: drop it, seek back again
    ADMIT_AFTER_GAP = "admit_after_gap"  # the jump came back: a real gap, process it


class Decision(NamedTuple):
    verdict: Verdict
    seek_to: int | None = None  # with SEEK: the offset to seek back to
    gap: tuple[int, int] | None = None  # with ADMIT_AFTER_GAP: [start, end) accepted


@dataclass(slots=True)
class _Partition:
    expected: int  # the next offset that may be admitted
    frontier: int  # every offset below it is settled or a confirmed gap
    settled: set[int] = field(default_factory=set)  # settled offsets at or above frontier
    gaps: dict[int, int] = field(default_factory=dict)  # confirmed gaps: start -> end
    jump: int | None = None  # the lowest jump seen since the last re-seek
    sought: bool = False  # a seek back went out since the jump was last delivered
    confirmations: int = 0  # deliveries of the jump that followed a seek back

    def advance(self) -> None:
        while True:
            if self.frontier in self.settled:
                self.settled.discard(self.frontier)
                self.frontier += 1
            elif self.frontier in self.gaps:
                self.frontier = self.gaps.pop(self.frontier)
            else:
                return

    def forget_jump(self) -> None:
        self.jump, self.sought, self.confirmations = None, False, 0


class OffsetGuard:
    """Per assigned partition of the guarded topics: what to admit, what may be committed."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self._partitions: dict[Hashable, _Partition] = {}

    def guards(self, topic: str) -> bool:
        return topic in self.topics

    def assign(self, tp: Hashable, position: int) -> None:
        """The partition was sought to ``position``: only that offset may come next.

        What was settled stays settled (a seek back only repeats work the event dedup
        absorbs); offsets below ``position`` were committed by the group.
        """
        state = self._partitions.get(tp)
        if state is None:
            self._partitions[tp] = _Partition(expected=position, frontier=position)
            return
        state.expected = position
        state.forget_jump()
        if position > state.frontier:
            state.frontier = position
            state.settled = {o for o in state.settled if o >= position}
            state.gaps = {s: e for s, e in state.gaps.items() if e > position}
            state.advance()

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Revoked: whatever is still in flight for these partitions is not ours to commit."""
        for tp in tps:
            self._partitions.pop(tp, None)

    def admit(self, tp: Hashable, offset: int) -> Decision:
        state = self._partitions.get(tp)
        if state is None or offset < state.expected:
            return Decision(Verdict.DROP)  # not assigned (stale), or admitted before
        if offset == state.expected:
            state.expected += 1
            state.forget_jump()
            return Decision(Verdict.ADMIT)
        if state.jump == offset:
            if state.sought:  # the broker answered a seek back with this offset
                state.sought = False
                state.confirmations += 1
            if state.confirmations >= GAP_CONFIRMATIONS:  # nothing lies between
                gap = (state.expected, offset)
                state.gaps[gap[0]] = gap[1]
                state.expected = offset + 1
                state.forget_jump()
                state.advance()
                return Decision(Verdict.ADMIT_AFTER_GAP, gap=gap)
            return Decision(Verdict.RESEEK, seek_to=state.expected)
        if state.jump is None or offset < state.jump:
            state.forget_jump()
            state.jump = offset
            return Decision(Verdict.SEEK, seek_to=state.expected)
        # beyond the jump we are already seeking back from: fetched before that seek (its
        # hand-off moved Faust's read position past the expected offset again)
        return Decision(Verdict.RESEEK, seek_to=state.expected)

    def sought(self, tp: Hashable, offset: int) -> None:
        """A seek of the partition back to ``offset`` went out: the next delivery of its jump
        is the broker's answer to it, not a copy fetched before it."""
        state = self._partitions.get(tp)
        if state is not None and state.jump is not None and state.expected == offset:
            state.sought = True

    def settle(self, tp: Hashable, offsets: Iterable[int]) -> None:
        """These offsets' effects are durable: the frontier may move past them."""
        state = self._partitions.get(tp)
        if state is None:
            return
        frontier = state.frontier
        state.settled.update(o for o in offsets if o >= frontier)
        state.advance()

    def committable(self, tp: Hashable) -> int | None:
        """The offset to commit (the next one to read after a restart), None if unknown."""
        state = self._partitions.get(tp)
        return None if state is None else state.frontier

    def expected(self, tp: Hashable) -> int | None:
        state = self._partitions.get(tp)
        return None if state is None else state.expected

    def assigned(self) -> Iterator[Hashable]:
        return iter(list(self._partitions))


class Partition(Hashable, Protocol):
    """A topic partition as Faust names it (``faust.types.TP``)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


@dataclass(slots=True)
class _Watched:
    expected: int  # the guard's expected offset when last seen
    since: float  # since when it has stood there (or since the last seek back)
    sought_at: int | None = None  # the log end at the last seek back from this standstill


class StallWatch:
    """The partitions that stand short of their log end with their agent free: seek them back.

    ``due`` is called on a timer with every assigned partition's log end (highwater). A
    partition is due a seek back to the guard's expected offset when its log end is past it,
    the expected offset has not moved for ``after_s``, and its agent could have taken more:
    another partition of the topic moved since the last call, or the agent is not ``blocked``
    (every batch it may run in flight, as while the database is slow: a seek back would only
    fetch again the records that wait in its buffer).

    Once per log end: a partition whose log ends in offsets that hold no record (transaction
    markers) is sought back once and then left alone until its log end moves; the guard's gap
    rule takes the next record that arrives, and the window starts again when it does.
    """

    def __init__(self, guard: OffsetGuard, after_s: float) -> None:
        self.guard = guard
        self._after_s = after_s
        self._watched: dict[Partition, _Watched] = {}

    def restart(self, now: float) -> None:
        """Nothing was fetched meanwhile (a rebalance, the flow suspended): time from now."""
        for watched in self._watched.values():
            watched.since = now
            watched.sought_at = None

    def due(
        self,
        now: float,
        highwaters: Mapping[Partition, int | None],
        blocked: Callable[[str], bool],
    ) -> list[tuple[Partition, int]]:
        """``(partition, offset)`` for each partition to seek back to ``offset``, now."""
        watched, moved = self._observe(now, highwaters)
        due = []
        for tp, seen in watched.items():
            highwater = highwaters.get(tp)
            if highwater is None or highwater <= seen.expected or seen.sought_at == highwater:
                continue
            if seen.sought_at is not None:  # sought back before, and its log grew since
                seen.since, seen.sought_at = now, None
            if now - seen.since < self._after_s:
                continue
            if tp.topic not in moved and blocked(tp.topic):
                continue  # its agent is busy with its own batches: the records may be queued
            seen.since, seen.sought_at = now, highwater
            due.append((tp, seen.expected))
        return due

    def _observe(
        self, now: float, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, _Watched], set[str]]:
        """Every guarded partition as it stands now, and the topics that moved since the last
        look."""
        guard, watched, moved = self.guard, {}, set()
        for tp in partitions:
            expected = guard.expected(tp)
            if expected is None:
                continue
            seen = self._watched.get(tp)
            if seen is None or seen.expected != expected:
                if seen is not None:
                    moved.add(tp.topic)
                seen = _Watched(expected, now)
            watched[tp] = seen
        self._watched = watched  # partitions no longer assigned are forgotten
        return watched, moved


def lag_by_label(
    log_ends: Mapping[Partition, int | None],
    committed: Mapping[Partition, int | None],
    labels: Mapping[str, str],
) -> dict[str, int]:
    """Records between each partition's committed offset and its log end, summed per topic
    label: every label appears, 0 when none of its partitions is assigned. A partition whose
    log end no fetch has reported yet counts 0; one with nothing committed counts from 0."""
    lag = dict.fromkeys(labels.values(), 0)
    for tp, end in log_ends.items():
        label = labels.get(tp.topic)
        if label is not None and end is not None:
            lag[label] += max(end - (committed.get(tp) or 0), 0)
    return lag
