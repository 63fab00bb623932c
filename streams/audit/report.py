"""The comparison of what the order topics hold with what the ledger recorded: pure.

``reconcile`` takes what was read from Kafka (a ``Window``: decoded events, undecodable
records, dead-letter positions, the consumer group's committed offsets) and what PostgreSQL
answered (the processed event keys, the orders' states) and returns the ``AuditReport``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from service.domain.commands import OrderEventKind
from service.domain.values import OrderState
from streams.audit.states import State, reachable_states, state_order

EventKey = tuple[str, str]  # (kind as processed_events.topic stores it, event_id)


class Position(NamedTuple):
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """An order event of the window that decodes, as the worker would decode it."""

    position: Position
    kind: OrderEventKind
    event_id: str
    order_id: str

    @property
    def key(self) -> EventKey:
        # the engine's key of processed_events (service/engine_claims.py event_key): the command's
        # kind value ("created", "paid", "cancelled", "extended") and the event id
        return (self.kind.value, self.event_id)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record of the window that the worker must have sent to the DLQ."""

    position: Position
    kind: OrderEventKind
    error: str
    reason: str
    event_id: str | None = None


@dataclass
class Window:
    """What the order topics and the DLQ held, and how far the consumer group got."""

    group: str
    events: list[SeenEvent] = field(default_factory=list)
    undecodable: list[Undecodable] = field(default_factory=list)
    dead_letters: set[Position] = field(default_factory=set)  # their source positions
    committed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read
    read_by_topic: dict[str, int] = field(default_factory=dict)
    dead_letters_read: int = 0

    def event_keys(self) -> list[EventKey]:
        return sorted({event.key for event in self.events})

    def created_orders(self) -> list[str]:
        return sorted({e.order_id for e in self.events if e.kind is OrderEventKind.CREATED})


@dataclass(frozen=True, slots=True)
class Unapplied:
    """An event (or undecodable record) with no trace in the ledger and no dead letter."""

    position: Position  # its first copy still ahead of the group (pending) or its first copy
    kind: OrderEventKind
    event_id: str | None
    order_id: str | None
    committed: int | None  # the group's committed offset of the partition; None: none
    problem: str
    copies: int = 1  # records with this event id in the window

    def line(self, status: str) -> str:
        group = "no committed offset" if self.committed is None else f"group at {self.committed}"
        copies = f", {self.copies} copies" if self.copies > 1 else ""
        return (
            f"{status:<7} {self.position} event {self.event_id or '?'} order "
            f"{self.order_id or '?'}: {self.problem} ({group}{copies})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.position.topic,
            "partition": self.position.partition,
            "offset": self.position.offset,
            "kind": self.kind.value,
            "event_id": self.event_id,
            "order_id": self.order_id,
            "problem": self.problem,
            "committed": self.committed,
            "copies": self.copies,
        }


@dataclass(frozen=True, slots=True)
class LostRange:
    """Lost records of one partition with no other record read between them."""

    topic: str
    partition: int
    first: int
    last: int
    events: int

    def line(self) -> str:
        offsets = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        plural = "" if self.events == 1 else "s"
        return f"{self.topic}[{self.partition}] {offsets} lost ({self.events} event{plural})"


@dataclass(frozen=True, slots=True)
class Disagreement:
    order_id: str
    state: str | None  # orders.state as stored; None: no row
    kinds: tuple[OrderEventKind, ...]
    allowed: tuple[State, ...]
    problem: str

    def line(self) -> str:
        return f"order   {self.order_id}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "state": self.state,
            "kinds": [k.value for k in self.kinds],
            "allowed": [None if s is None else s.value for s in self.allowed],
            "problem": self.problem,
        }


@dataclass
class AuditReport:
    group: str
    read: int  # records of the order topics in the window
    read_by_topic: dict[str, int]
    dead_letters: int  # dead letters read (the whole DLQ)
    lost: list[Unapplied]
    pending: list[Unapplied]
    lost_ranges: list[LostRange]
    disagreeing: list[Disagreement]
    orders_checked: int  # orders with their created event in the window
    orders_pending: list[str]  # of those, not compared: an event of theirs is pending

    @property
    def clean(self) -> bool:
        return not (self.lost or self.pending or self.disagreeing)

    def lines(self) -> list[str]:
        out = [u.line("lost") for u in self.lost]
        out += [u.line("pending") for u in self.pending]
        if self.lost_ranges:
            out.append("lost ranges:")
            out += [f"  {r.line()}" for r in self.lost_ranges]
        out += [d.line() for d in self.disagreeing]
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.read_by_topic.items()))
        out.append(
            f"read {self.read} records ({topics or 'none'}) and {self.dead_letters} dead letters; "
            f"group {self.group}"
        )
        checked = self.orders_checked - len(self.orders_pending)
        out.append(
            f"{len(self.lost)} lost, {len(self.pending)} pending, "
            f"{len(self.disagreeing)} of {checked} orders disagree with their events"
            + (
                f" ({len(self.orders_pending)} more wait for pending events)"
                if self.orders_pending
                else ""
            )
        )
        out.append("clean" if self.clean else "NOT CLEAN")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "group": self.group,
            "read": self.read,
            "read_by_topic": dict(sorted(self.read_by_topic.items())),
            "dead_letters": self.dead_letters,
            "counts": {
                "lost": len(self.lost),
                "pending": len(self.pending),
                "disagreeing": len(self.disagreeing),
                "orders_checked": self.orders_checked,
                "orders_pending": len(self.orders_pending),
            },
            "lost": [u.as_dict() for u in self.lost],
            "pending": [u.as_dict() for u in self.pending],
            "lost_ranges": [
                {
                    "topic": r.topic,
                    "partition": r.partition,
                    "first": r.first,
                    "last": r.last,
                    "events": r.events,
                }
                for r in self.lost_ranges
            ],
            "disagreeing": [d.as_dict() for d in self.disagreeing],
            "orders_pending": self.orders_pending,
        }


# --- the comparison ------------------------------------------------------------------------

PROCESSED, DEAD, LOST, PENDING = "processed", "dead-lettered", "lost", "pending"


def reconcile(window: Window, processed: set[EventKey], states: Mapping[str, str]) -> AuditReport:
    """Compare the window with the ledger: ``processed`` keys, ``states`` by order id."""
    copies: dict[EventKey, list[SeenEvent]] = defaultdict(list)
    for event in window.events:
        copies[event.key].append(event)
    status: dict[EventKey, str] = {}
    lost: list[Unapplied] = []
    pending: list[Unapplied] = []
    lost_at: dict[Position, object] = {}  # lost record -> its event (for the ranges' counts)
    for key, seen in copies.items():
        seen.sort(key=lambda e: e.position)
        if any(e.position in window.dead_letters for e in seen):
            status[key] = DEAD
        elif key in processed:
            status[key] = PROCESSED
        else:
            ahead = [e for e in seen if not _consumed(window.committed, e.position)]
            status[key] = PENDING if ahead else LOST
            first = ahead[0] if ahead else seen[0]
            unapplied = Unapplied(
                first.position,
                first.kind,
                first.event_id,
                first.order_id,
                _committed(window.committed, first.position),
                "not consumed yet" if ahead else "not in the ledger, the group is past it",
                len(seen),
            )
            (pending if ahead else lost).append(unapplied)
            if not ahead:
                lost_at.update((e.position, key) for e in seen)
    for record in window.undecodable:
        if record.position in window.dead_letters:
            continue
        consumed = _consumed(window.committed, record.position)
        problem = f"undecodable ({record.error}: {record.reason}), " + (
            "no dead letter, the group is past it" if consumed else "not consumed yet"
        )
        unapplied = Unapplied(
            record.position,
            record.kind,
            record.event_id,
            None,
            _committed(window.committed, record.position),
            problem,
        )
        (lost if consumed else pending).append(unapplied)
        if consumed:
            lost_at[record.position] = record.position
    read = [e.position for e in window.events] + [r.position for r in window.undecodable]
    disagreeing, checked, orders_pending = _orders(copies, status, states)
    return AuditReport(
        group=window.group,
        read=sum(window.read_by_topic.values()),
        read_by_topic=dict(window.read_by_topic),
        dead_letters=window.dead_letters_read,
        lost=sorted(lost, key=lambda u: u.position),
        pending=sorted(pending, key=lambda u: u.position),
        lost_ranges=lost_ranges(read, lost_at),
        disagreeing=disagreeing,
        orders_checked=checked,
        orders_pending=orders_pending,
    )


def _committed(committed: Mapping[tuple[str, int], int], at: Position) -> int | None:
    return committed.get((at.topic, at.partition))


def _consumed(committed: Mapping[tuple[str, int], int], at: Position) -> bool:
    """The group says it is done with this record: its committed offset is past it."""
    offset = _committed(committed, at)
    return offset is not None and at.offset < offset


def lost_ranges(read: Iterable[Position], lost_at: Mapping[Position, object]) -> list[LostRange]:
    """Runs of lost records per partition; a run ends at any record read that is not lost."""
    by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
    for at in set(read) | set(lost_at):
        by_partition[at.topic, at.partition].append(at.offset)
    ranges: list[LostRange] = []
    for (topic, partition), offsets in sorted(by_partition.items()):
        run: list[Position] = []
        for offset in sorted(offsets):
            at = Position(topic, partition, offset)
            if at in lost_at:
                run.append(at)
                continue
            if run:
                ranges.append(_range(run, lost_at))
                run = []
        if run:
            ranges.append(_range(run, lost_at))
    return ranges


def _range(run: list[Position], lost_at: Mapping[Position, object]) -> LostRange:
    events = len({lost_at[at] for at in run})
    return LostRange(run[0].topic, run[0].partition, run[0].offset, run[-1].offset, events)


def _orders(
    copies: Mapping[EventKey, list[SeenEvent]],
    status: Mapping[EventKey, str],
    states: Mapping[str, str],
) -> tuple[list[Disagreement], int, list[str]]:
    """Orders whose created event is in the window, against the states their events allow."""
    events_of: dict[str, list[SeenEvent]] = defaultdict(list)
    for seen in copies.values():
        events_of[seen[0].order_id].append(seen[0])
    disagreeing: list[Disagreement] = []
    checked = 0
    waiting: list[str] = []
    for order_id, events in sorted(events_of.items()):
        if not any(e.kind is OrderEventKind.CREATED and status[e.key] != DEAD for e in events):
            continue
        checked += 1
        if any(status[e.key] == PENDING for e in events):
            waiting.append(order_id)  # its pending events are reported already
            continue
        # dead-lettered events were given up on purpose: the ledger must not reflect them
        applied = [e for e in events if status[e.key] in (PROCESSED, LOST)]
        kinds = tuple(k for k in OrderEventKind if any(e.kind is k for e in applied))
        allowed = tuple(sorted(reachable_states(kinds), key=state_order))
        raw = states.get(order_id)
        known = raw is None or _state(raw) is not None  # a state this code does not know: report
        if known and _state(raw) in allowed:
            continue
        disagreeing.append(
            Disagreement(
                order_id, raw, kinds, allowed, _problem(raw, kinds, allowed, applied, status)
            )
        )
    return disagreeing, checked, waiting


def _state(raw: str | None) -> OrderState | None:
    try:
        return None if raw is None else OrderState(raw)
    except ValueError:
        return None


def _problem(
    raw: str | None,
    kinds: tuple[OrderEventKind, ...],
    allowed: tuple[State, ...],
    applied: list[SeenEvent],
    status: Mapping[EventKey, str],
) -> str:
    lost = [e for e in applied if status[e.key] == LOST]
    created = next((e for e in applied if e.kind is OrderEventKind.CREATED), None)
    if raw is None and created is not None and status[created.key] == LOST:
        return f"no ledger row: its created event {created.event_id} is lost"
    if raw is None and not lost and created is not None:
        return f"no ledger row, but its created event {created.event_id} was processed"
    names = ", ".join(k.value for k in kinds)
    allows = ", ".join("no row" if s is None else s.value for s in allowed)
    problem = f"ledger says {raw or 'no row'}, its events ({names}) allow only {allows}"
    if lost:
        problem += "; lost: " + ", ".join(f"{e.kind.value} {e.event_id}" for e in lost)
    return problem
