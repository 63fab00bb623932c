"""``inventory audit``'s pure parts: the reachable states, the comparison, the arguments."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

import pytest

from service.commands import audit as command
from service.domain.commands import OrderEventKind
from service.domain.order_machine import STREAM_TABLE
from service.domain.values import OrderState
from streams.audit import reachable_states
from streams.audit.report import (
    LostRange,
    Position,
    SeenEvent,
    Undecodable,
    Window,
    reconcile,
)

C, P, X = OrderEventKind.CREATED, OrderEventKind.PAID, OrderEventKind.CANCELLED
E = OrderEventKind.EXTENDED
S = OrderState

CREATED, PAID, CANCELLED = "order-created", "order-paid", "order-cancelled"
EXTENDED = "order-extended"
TOPIC_OF = {C: CREATED, P: PAID, X: CANCELLED, E: EXTENDED}


# --- reachable states ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (set(), {None}),
        ({C}, {S.RESERVED, S.REJECTED, S.EXPIRED, S.COMMITTED, S.RELEASED}),
        ({P}, {S.PAID_EARLY}),
        ({X}, {S.CANCELLED_EARLY}),
        # paid before created reserves and commits (or fails to); an RPC may release first
        ({C, P}, {S.COMMITTED, S.COMMIT_FAILED, S.RELEASED}),
        # an RPC commit before the cancel leaves it COMMITTED (the cancel is only reported)
        ({C, X}, {S.RELEASED, S.COMMITTED}),
        ({P, X}, {S.RELEASED, S.CANCELLED_EARLY}),
        ({C, P, X}, {S.COMMITTED, S.COMMIT_FAILED, S.RELEASED}),
    ],
)
def test_reachable_states(kinds: set[OrderEventKind], expected: set[OrderState | None]) -> None:
    assert reachable_states(kinds) == expected


@pytest.mark.parametrize("kinds", [set(), {C}, {P}, {X}, {C, P}, {C, X}, {P, X}, {C, P, X}])
def test_an_extension_never_moves_an_order(kinds: set[OrderEventKind]) -> None:
    # EXTENDED keeps a RESERVED order RESERVED and NOT_EXTENDED changes nothing: the ledger's
    # trace of an order-extended event is its processed_events row alone
    assert reachable_states(kinds | {E}) == reachable_states(kinds)


def test_a_paid_order_is_never_left_reserved() -> None:
    assert S.RESERVED not in reachable_states({C, P})
    assert S.RESERVED not in reachable_states({C, P, X})


def test_every_state_of_the_table_is_reachable_from_some_events() -> None:
    everything = set().union(*(reachable_states(k) for k in (set(), {C}, {P}, {X}, {C, P}, {P, X})))
    assert everything == set(STREAM_TABLE)


# --- the comparison ------------------------------------------------------------------------


def event(
    kind: OrderEventKind, partition: int, offset: int, event_id: str, order: str
) -> SeenEvent:
    return SeenEvent(Position(TOPIC_OF[kind], partition, offset), kind, event_id, order)


def bad(kind: OrderEventKind, partition: int, offset: int) -> Undecodable:
    return Undecodable(Position(TOPIC_OF[kind], partition, offset), kind, "json", "not JSON")


def window(*records: SeenEvent | Undecodable, **kw: object) -> Window:
    w = Window(group="inventory-service", **kw)  # type: ignore[arg-type]
    for r in records:
        (w.events if isinstance(r, SeenEvent) else w.undecodable).append(r)  # type: ignore[arg-type]
        topic = r.position.topic
        w.read_by_topic[topic] = w.read_by_topic.get(topic, 0) + 1
    return w


def test_a_window_fully_in_the_ledger_is_clean() -> None:
    w = window(
        event(C, 0, 0, "e1", "o1"),
        event(P, 0, 0, "e2", "o1"),
        event(C, 1, 0, "e3", "o2"),
        committed={(CREATED, 0): 1, (PAID, 0): 1, (CREATED, 1): 1},
    )
    report = reconcile(
        w,
        {("created", "e1"), ("paid", "e2"), ("created", "e3")},
        {
            "o1": "COMMITTED",
            "o2": "RESERVED",
        },
    )
    assert report.clean
    assert (report.read, report.orders_checked) == (3, 2)
    assert report.lines()[-1] == "clean"
    assert w.event_keys() == [("created", "e1"), ("created", "e3"), ("paid", "e2")]
    assert w.created_orders() == ["o1", "o2"]


def test_lost_below_the_committed_offset_and_pending_at_or_above() -> None:
    w = window(
        event(C, 0, 4, "e4", "o4"),
        event(C, 0, 5, "e5", "o5"),
        event(C, 1, 0, "e6", "o6"),  # partition 1: no committed offset at all
        committed={(CREATED, 0): 5},
    )
    report = reconcile(w, set(), {})
    assert [(u.position.offset, u.event_id, u.committed) for u in report.lost] == [(4, "e4", 5)]
    assert [(u.position, u.committed) for u in report.pending] == [
        (Position(CREATED, 0, 5), 5),
        (Position(CREATED, 1, 0), None),
    ]
    # the order of the lost event disagrees (no row); the pending ones wait, reported once
    assert [d.order_id for d in report.disagreeing] == ["o4"]
    assert report.disagreeing[0].problem == "no ledger row: its created event e4 is lost"
    assert report.orders_pending == ["o5", "o6"]
    assert not report.clean
    text = "\n".join(report.lines())
    assert "lost    order-created[0]@4 event e4 order o4: not in the ledger" in text
    assert "pending order-created[0]@5 event e5 order o5: not consumed yet (group at 5)" in text
    assert "pending order-created[1]@0 event e6 order o6: not consumed yet (no committed" in text


def test_copies_of_an_event_are_one_event() -> None:
    committed = {(CREATED, 0): 3}
    processed_copy = window(
        event(C, 0, 1, "e1", "o1"), event(C, 0, 7, "e1", "o1"), committed=committed
    )
    assert reconcile(processed_copy, {("created", "e1")}, {"o1": "RESERVED"}).clean
    # one copy consumed, one still ahead of the group: it will be applied, so pending
    ahead = reconcile(processed_copy, set(), {})
    assert (len(ahead.lost), len(ahead.pending)) == (0, 1)
    assert ahead.pending[0].position.offset == 7 and ahead.pending[0].copies == 2
    # both consumed and neither applied: one lost event, both records in its range
    behind = window(event(C, 0, 1, "e1", "o1"), event(C, 0, 2, "e1", "o1"), committed=committed)
    report = reconcile(behind, set(), {})
    assert [(u.position.offset, u.copies) for u in report.lost] == [(1, 2)]
    assert report.lost_ranges == [LostRange(CREATED, 0, 1, 2, 1)]


def test_the_same_event_id_on_two_topics_is_two_events() -> None:
    w = window(event(C, 0, 0, "e1", "o1"), event(P, 0, 0, "e1", "o1"), committed={})
    report = reconcile(w, {("created", "e1")}, {"o1": "RESERVED"})
    assert [u.position.topic for u in report.pending] == [PAID]


def test_undecodable_records_need_a_dead_letter() -> None:
    w = window(
        bad(C, 0, 0),
        bad(C, 0, 1),
        bad(P, 0, 0),
        dead_letters={Position(CREATED, 0, 0)},
        committed={(CREATED, 0): 2},
    )
    report = reconcile(w, set(), {})
    assert [u.position for u in report.lost] == [Position(CREATED, 0, 1)]
    assert "undecodable (json: not JSON), no dead letter" in report.lost[0].problem
    assert [u.position for u in report.pending] == [Position(PAID, 0, 0)]
    assert report.orders_checked == 0


def test_a_dead_lettered_event_is_accounted_for_and_not_expected_in_the_ledger() -> None:
    # decoded, then rejected by the engine: a dead letter, maybe a processed row, no effect
    w = window(
        event(C, 0, 0, "e1", "o1"),
        event(P, 0, 0, "e2", "o2"),
        event(C, 0, 1, "e3", "o2"),
        dead_letters={Position(CREATED, 0, 0), Position(PAID, 0, 0)},
        committed={(CREATED, 0): 2, (PAID, 0): 1},
    )
    report = reconcile(w, {("created", "e3")}, {"o2": "RESERVED"})
    assert report.clean  # o1 is not checked; o2's paid event was given up on
    assert report.orders_checked == 1


def test_lost_ranges_break_at_records_that_are_not_lost() -> None:
    records: list[SeenEvent | Undecodable] = [event(C, 7, n, f"e{n}", f"o{n}") for n in range(10)]
    records += [event(C, 7, 10, "e10", "o10"), event(C, 7, 12, "e12", "o12")]  # 11 not read
    records.append(bad(C, 7, 13))
    records.append(event(C, 3, 0, "f0", "p0"))
    w = window(*records, committed={(CREATED, 7): 100, (CREATED, 3): 1})
    processed = {("created", "e0"), ("created", "e1"), ("created", "e6")}
    report = reconcile(w, processed, {})
    assert [r.line() for r in report.lost_ranges] == [
        "order-created[3] 0 lost (1 event)",
        "order-created[7] 2-5 lost (4 events)",
        "order-created[7] 7-13 lost (6 events)",
    ]
    assert len(report.lost) == 11
    assert "lost ranges:" in report.lines()


def test_orders_whose_state_the_events_cannot_explain() -> None:
    w = window(
        event(C, 0, 0, "c1", "paid-but-reserved"),
        event(P, 0, 0, "p1", "paid-but-reserved"),
        event(C, 0, 1, "c2", "no-row"),
        event(C, 0, 2, "c3", "odd-state"),
        event(C, 0, 3, "c4", "fine"),
        event(P, 0, 1, "p5", "paid-only"),  # no created event in the window: not checked
        committed={(CREATED, 0): 4, (PAID, 0): 2},
    )
    processed = {("created", f"c{n}") for n in range(1, 5)} | {("paid", "p1"), ("paid", "p5")}
    states = {"paid-but-reserved": "RESERVED", "odd-state": "SHIPPED", "fine": "EXPIRED"}
    report = reconcile(w, processed, states)
    assert report.lost == [] and report.pending == []
    by_order = {d.order_id: d for d in report.disagreeing}
    assert sorted(by_order) == ["no-row", "odd-state", "paid-but-reserved"]
    assert by_order["no-row"].problem == "no ledger row, but its created event c2 was processed"
    reserved = by_order["paid-but-reserved"]
    assert reserved.problem == (
        "ledger says RESERVED, its events (created, paid) allow only "
        "COMMITTED, RELEASED, COMMIT_FAILED"
    )
    assert report.orders_checked == 4
    assert not report.clean
    assert "3 of 4 orders disagree" in report.lines()[-2]


def test_an_order_left_behind_by_a_lost_event_names_it() -> None:
    w = window(
        event(C, 0, 0, "c1", "o1"),
        event(P, 0, 0, "p1", "o1"),
        committed={(CREATED, 0): 1, (PAID, 0): 1},
    )
    report = reconcile(w, {("created", "c1")}, {"o1": "RESERVED"})
    assert [u.event_id for u in report.lost] == ["p1"]
    (order,) = report.disagreeing
    assert order.problem == (
        "ledger says RESERVED, its events (created, paid) allow only "
        "COMMITTED, RELEASED, COMMIT_FAILED; lost: paid p1"
    )


def test_an_extension_is_accounted_for_by_its_processed_row() -> None:
    w = window(
        event(C, 0, 0, "c1", "o1"),
        event(E, 0, 0, "x1", "o1"),  # extended: RESERVED with a new deadline
        event(E, 0, 1, "x2", "ghost"),  # refused (NOT_EXTENDED): unknown order, no row
        committed={(CREATED, 0): 1, (EXTENDED, 0): 2},
    )
    processed = {("created", "c1"), ("extended", "x1"), ("extended", "x2")}
    report = reconcile(w, processed, {"o1": "RESERVED"})
    assert report.clean, report.lines()
    assert report.orders_checked == 1  # ghost has no created event in the window
    assert w.event_keys() == [("created", "c1"), ("extended", "x1"), ("extended", "x2")]


def test_an_extension_without_its_processed_row_is_lost_though_the_order_agrees() -> None:
    # the group committed past it and the ledger never claimed it: lost, even though the
    # order's state cannot tell (an extension never changes it)
    w = window(
        event(C, 0, 0, "c1", "o1"),
        event(E, 1, 4, "x1", "o1"),
        committed={(CREATED, 0): 1, (EXTENDED, 1): 5},
    )
    report = reconcile(w, {("created", "c1")}, {"o1": "RESERVED"})
    assert [(u.position, u.kind, u.event_id) for u in report.lost] == [
        (Position(EXTENDED, 1, 4), E, "x1")
    ]
    assert report.pending == [] and report.orders_pending == []
    assert report.disagreeing == [] and report.orders_checked == 1
    assert not report.clean
    assert report.lost_ranges == [LostRange(EXTENDED, 1, 4, 4, 1)]
    assert "lost    order-extended[1]@4 event x1 order o1: not in the ledger" in "\n".join(
        report.lines()
    )


def test_the_report_as_json() -> None:
    w = window(event(C, 0, 0, "e1", "o1"), bad(C, 0, 1), committed={(CREATED, 0): 1})
    document = json.loads(json.dumps(reconcile(w, set(), {}).as_dict()))
    assert document["clean"] is False
    assert document["counts"] == {
        "lost": 1,
        "pending": 1,
        "disagreeing": 1,
        "orders_checked": 1,
        "orders_pending": 0,
    }
    assert document["lost"][0]["event_id"] == "e1"
    assert document["pending"][0]["offset"] == 1
    assert document["lost_ranges"] == [
        {"topic": CREATED, "partition": 0, "first": 0, "last": 0, "events": 1}
    ]
    assert document["disagreeing"][0]["allowed"][0] == "RESERVED"


# --- arguments -----------------------------------------------------------------------------


def args(*argv: str) -> argparse.Namespace:
    from service.cli import build_parser

    return build_parser().parse_args(["audit", *argv])


def test_since_arguments() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert command.parse_since(args()) is None
    assert command.parse_since(args("--since", "2025-01-01T11:00:00Z")) == datetime(
        2025, 1, 1, 11, tzinfo=UTC
    )
    assert command.parse_since(args("--since", "2025-01-01T11:00:00")) == datetime(
        2025, 1, 1, 11, tzinfo=UTC
    )
    assert command.parse_since(args("--since-minutes", "30"), now) == datetime(
        2025, 1, 1, 11, 30, tzinfo=UTC
    )


def test_from_arguments() -> None:
    parsed = args("--from", "order-created:7=1357", "--from", "a:b:0=5")
    assert command.parse_starts(parsed.start) == {("order-created", 7): 1357, ("a:b", 0): 5}


@pytest.mark.parametrize(
    "argv",
    [
        ["--since", "yesterday"],
        ["--since-minutes", "many"],
        ["--since-minutes", "-5"],
        ["--from", "order-created=5"],
        ["--from", "order-created:x=5"],
        ["--from", ":0=5"],
        ["--from", "order-created:0=-1"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert command.run(args(*argv)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("inventory audit: ")


def test_unreachable_servers_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INVENTORY_DATABASE_URL", "postgresql+asyncpg://u@127.0.0.1:1/db")
    monkeypatch.setenv("INVENTORY_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert command.run(args()) == 2
    out, err = capsys.readouterr()
    assert out == ""
    where, failure = err.splitlines()  # where it connected, then why it could not run
    assert where.startswith("inventory audit: connecting to PostgreSQL")
    assert failure.startswith("inventory audit: could not run: database: ")


@pytest.mark.parametrize("kinds", [set(), {C}, {P}, {X}, {C, P}, {C, X}, {P, X}, {C, P, X}])
def test_a_return_never_moves_an_order(kinds: set[OrderEventKind]) -> None:
    # RETURNED keeps a COMMITTED order COMMITTED and RETURN_REFUSED changes nothing: the audit
    # reads order-returned with the other topics, and its books need no new state
    assert reachable_states(kinds | {OrderEventKind.RETURNED}) == reachable_states(kinds)
