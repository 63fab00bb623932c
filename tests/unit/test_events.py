"""The produced events' wire format: payloads as the contracts in docs/events shape them, and
parsed back the way the cache warmer and the expiry schedule read them."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from service.domain import validation as v
from service.domain.commands import (
    Command,
    Commit,
    Expire,
    Extend,
    Release,
    Return,
    Source,
    UpdateStock,
)
from service.domain.events import (
    MalformedEvent,
    ReservationChanged,
    StockChanged,
    parse_reservation_changed,
    parse_stock_changed,
    reservation_payload,
    stock_alert_payload,
    stock_changed_payload,
)
from service.domain.planner import plan_batch
from service.domain.policies import Alert, StockAlert
from service.domain.results import LineOutcome, ReservationLine
from service.domain.snapshot import OrderRow, ReservationRow, Snapshot, StockRow, Warehouse
from service.domain.values import (
    DEFAULT_POLICY,
    Item,
    Levels,
    OrderState,
    ReservationStatus,
    ResultStatus,
    Shortage,
    Sku,
    StockOperation,
    StockPolicy,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"
AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
EXPIRES = AT + timedelta(minutes=15)
RESERVATION_ID = "2f1c1a56-8a4e-4c55-9b8e-0b1c6f5b7a01"
PV = Sku("p", "v")
HELD = ReservationLine(RESERVATION_ID, PV, "wh", 2, ReservationStatus.PENDING)
HELD_NO_VARIANT = ReservationLine(
    "5d0e3f9a-1b2c-4d5e-8f60-718293a4b5c6", Sku("q"), "wh-2", 1, ReservationStatus.PENDING
)
REQUESTED = ReservationLine("", Sku("q"), "", 5, ReservationStatus.PENDING)  # no warehouse named
SHORT = Shortage(Sku("q"), 5, 2)
# 2 of the 5 units promised beyond the warehouse's sellable stock
BACKORDERED = ReservationLine(RESERVATION_ID, PV, "wh", 5, ReservationStatus.PENDING, 2)
POLICY = StockPolicy(safety_stock=1, reorder_point=5, backorder_limit=4)
# backordered: 6 reserved of 4 on hand, 1 of them safety stock -> sellable -3, 3 owed
BACKORDERED_ROW = StockRow("sid", PV, "wh", Levels(-2, 6, 4), 8, policy=POLICY, backordered=3)
EXTENDED_TO = EXPIRES + timedelta(minutes=30)
# a partial reservation: 2 of the 5 units of p/v held, none of q (no warehouse named)
PARTIAL = (LineOutcome(PV, "wh", 5, 2), LineOutcome(Sku("q"), None, 1, 0))


def wire(payload: dict[str, Any]) -> Any:
    """The payload as a consumer receives it: through JSON."""
    return json.loads(json.dumps(payload))


# --- stock-changed ---------------------------------------------------------------------------


def test_the_stock_changed_payload_is_the_contract_byte_for_byte() -> None:
    row = StockRow("sid", PV, "wh", Levels(3, 2, 5), 7)
    assert json.dumps(stock_changed_payload(row, "RESERVE", "o-1", AT)) == (
        '{"product_id": "p", "variant_id": "v", "warehouse_id": "wh", "available": 3, '
        '"reserved": 2, "total": 5, "version": 7, "sellable": 3, "backordered": 0, '
        '"safety_stock": 0, "reorder_point": null, "backorder_limit": 0, '
        '"cause": "RESERVE", "order_id": "o-1", "at": "2026-01-02T03:04:05.678000+00:00"}'
    )


def test_a_backordered_row_with_a_policy_is_the_contract_byte_for_byte() -> None:
    assert json.dumps(stock_changed_payload(BACKORDERED_ROW, "RESERVE", "o-1", AT)) == (
        '{"product_id": "p", "variant_id": "v", "warehouse_id": "wh", "available": -2, '
        '"reserved": 6, "total": 4, "version": 8, "sellable": -3, "backordered": 3, '
        '"safety_stock": 1, "reorder_point": 5, "backorder_limit": 4, '
        '"cause": "RESERVE", "order_id": "o-1", "at": "2026-01-02T03:04:05.678000+00:00"}'
    )


@pytest.mark.parametrize(
    ("row", "cause", "order_id", "expected"),
    [
        (
            StockRow("sid", PV, "wh", Levels(3, 2, 5), 7),
            "RESERVE",
            "o-1",
            StockChanged("p", "v", "wh", 3, 2, 5, 7, "", AT),
        ),
        (
            StockRow("sid", Sku("p"), "wh", Levels(0, 0, 0), 1),
            "SET",
            None,
            StockChanged("p", None, "wh", 0, 0, 0, 1, "", AT),
        ),
        (
            StockRow("sid", Sku("p:x", "v/1"), "w:1", Levels(10, 0, 10), 42),
            "COMMIT",
            "o-2",
            StockChanged("p:x", "v/1", "w:1", 10, 0, 10, 42, "", AT),
        ),
        (
            BACKORDERED_ROW,
            "RESERVE",
            "o-3",
            StockChanged("p", "v", "wh", -2, 6, 4, 8, "", AT, POLICY, 3),
        ),
        (  # backordered units committed before the stock came: nothing on hand, 3 owed
            StockRow("sid", PV, "wh", Levels(-3, 0, -3), 9, policy=StockPolicy(0, None, 3)),
            "COMMIT",
            "o-4",
            StockChanged("p", "v", "wh", -3, 0, -3, 9, "", AT, StockPolicy(0, None, 3)),
        ),
    ],
)
def test_stock_changed_round_trips(
    row: StockRow, cause: str, order_id: str | None, expected: StockChanged
) -> None:
    parsed = parse_stock_changed(wire(stock_changed_payload(row, cause, order_id, AT)))
    assert parsed == expected
    assert parsed.sku == row.sku
    assert parsed.sellable == row.policy.sellable(row.levels.available)


POLICY_FIELDS = ("sellable", "backordered", "safety_stock", "reorder_point", "backorder_limit")


def stock_body(**change: Any) -> dict[str, Any]:
    """A valid stock-changed body with ``change`` applied; ``...`` removes a field."""
    body: dict[str, Any] = {
        "product_id": "p",
        "variant_id": None,
        "warehouse_id": "w",
        "available": 1,
        "reserved": 0,
        "total": 1,
        "version": 1,
        "sellable": 1,
        "backordered": 0,
        "safety_stock": 0,
        "reorder_point": None,
        "backorder_limit": 0,
        "cause": "ADD",
        "order_id": None,
        "at": "2025-01-01T00:00:00+00:00",
    }
    body.update(change)
    return {key: value for key, value in body.items() if value is not ...}


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (stock_body(variant_id=""), "variant_id", None),  # "" is no variant, like null
        (stock_body(variant_id=...), "variant_id", None),
        (stock_body(variant_id="v"), "variant_id", "v"),
        (stock_body(at=...), "at", None),  # it only times propagation
        (stock_body(at=1735689600), "at", None),
        (stock_body(at="2025-01-01T00:00:00Z"), "at", datetime(2025, 1, 1, tzinfo=UTC)),
        (stock_body(stock_id="sid-1"), "stock_id", "sid-1"),
        (stock_body(stock_id=""), "stock_id", ""),
        (stock_body(stock_id=None), "stock_id", ""),
        (stock_body(cause=..., order_id=...), "version", 1),  # neither is read
        (stock_body(extra={"ignored": True}), "version", 1),
    ],
)
def test_stock_changed_reads_leniently_what_the_cache_does_not_need(
    body: dict[str, Any], field: str, value: Any
) -> None:
    assert getattr(parse_stock_changed(body), field) == value


# an event from before stock policies: none of their fields
BEFORE_POLICIES = stock_body(**dict.fromkeys(POLICY_FIELDS, ...))


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        (BEFORE_POLICIES, "policy", DEFAULT_POLICY),
        (BEFORE_POLICIES, "backordered", 0),
        (BEFORE_POLICIES, "sellable", 1),  # all of available
        (stock_body(safety_stock=...), "policy", DEFAULT_POLICY),
        (stock_body(reorder_point=...), "policy", DEFAULT_POLICY),
        (stock_body(backorder_limit=...), "policy", DEFAULT_POLICY),
        (stock_body(backordered=...), "backordered", 0),
        (
            stock_body(safety_stock=2, reorder_point=5, backorder_limit=3),
            "policy",
            StockPolicy(2, 5, 3),
        ),
        (stock_body(reorder_point=0), "policy", StockPolicy(reorder_point=0)),
        (stock_body(backordered=4), "backordered", 4),
        # a backordered row goes below zero: available and total are any integers
        (stock_body(available=-2, reserved=2, total=0), "available", -2),
        (stock_body(available=-3, reserved=0, total=-3), "total", -3),
        # sellable is derived from available and the safety stock, never read
        (stock_body(available=5, total=5, safety_stock=2, sellable=99), "sellable", 3),
        (stock_body(available=1, total=1, safety_stock=2, sellable=...), "sellable", -1),
    ],
)
def test_stock_changed_reads_the_policy_fields_and_defaults_absent_ones(
    body: dict[str, Any], field: str, value: Any
) -> None:
    assert getattr(parse_stock_changed(body), field) == value


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (stock_body(product_id=""), "product_id"),
        (stock_body(product_id=5), "product_id"),
        (stock_body(product_id=...), "product_id"),
        (stock_body(variant_id=5), "variant_id"),
        (stock_body(warehouse_id=None), "warehouse_id"),
        (stock_body(warehouse_id=...), "warehouse_id"),
        (stock_body(available="1"), "available"),
        (stock_body(available=None), "available"),
        (stock_body(available=...), "available"),
        (stock_body(reserved=True), "reserved"),
        (stock_body(reserved=-1), "reserved"),
        (stock_body(total=1.0), "total"),
        (stock_body(total=...), "total"),
        (stock_body(safety_stock=-1), "safety_stock"),
        (stock_body(safety_stock="2"), "safety_stock"),
        (stock_body(safety_stock=None), "safety_stock"),
        (stock_body(reorder_point=-1), "reorder_point"),
        (stock_body(reorder_point=1.5), "reorder_point"),
        (stock_body(reorder_point=False), "reorder_point"),
        (stock_body(backorder_limit=-4), "backorder_limit"),
        (stock_body(backorder_limit=True), "backorder_limit"),
        (stock_body(backordered=-1), "backordered"),
        (stock_body(backordered=[1]), "backordered"),
        (stock_body(version="7"), "version"),
        (stock_body(version=...), "version"),
        (stock_body(stock_id=5), "stock_id"),
        (stock_body(at="yesterday"), "at"),
        ([1], "not a JSON object"),
        ("p", "not a JSON object"),
        (None, "not a JSON object"),
    ],
)
def test_malformed_stock_changed_bodies_are_refused(body: Any, named: str) -> None:
    with pytest.raises(MalformedEvent, match=f"^stock-changed: .*{named}"):
        parse_stock_changed(body)


# --- inventory-reservations ----------------------------------------------------------------


def test_the_reservation_payload_is_the_contract_byte_for_byte() -> None:
    payload = reservation_payload(
        "o-1", ResultStatus.RESERVED, [HELD, HELD_NO_VARIANT], at=AT, expires_at=EXPIRES
    )
    assert json.dumps(payload) == (
        '{"order_id": "o-1", "status": "RESERVED", "items": ['
        '{"product_id": "p", "variant_id": "v", "warehouse_id": "wh", "quantity": 2, '
        f'"reservation_id": "{RESERVATION_ID}"}}, '
        '{"product_id": "q", "variant_id": null, "warehouse_id": "wh-2", "quantity": 1, '
        '"reservation_id": "5d0e3f9a-1b2c-4d5e-8f60-718293a4b5c6"}], '
        '"at": "2026-01-02T03:04:05.678000+00:00", '
        '"expires_at": "2026-01-02T03:19:05.678000+00:00"}'
    )


def test_a_backordered_item_says_how_many_of_its_units_are_backordered() -> None:
    payload = reservation_payload(
        "o-1", ResultStatus.RESERVED, [BACKORDERED, HELD_NO_VARIANT], at=AT, expires_at=EXPIRES
    )
    # only the backordered item carries the field: absent means none
    assert json.dumps(payload["items"]) == (
        '[{"product_id": "p", "variant_id": "v", "warehouse_id": "wh", "quantity": 5, '
        f'"reservation_id": "{RESERVATION_ID}", "backordered": 2}}, '
        '{"product_id": "q", "variant_id": null, "warehouse_id": "wh-2", "quantity": 1, '
        '"reservation_id": "5d0e3f9a-1b2c-4d5e-8f60-718293a4b5c6"}]'
    )


def test_a_rejection_shows_the_requested_items_and_the_shortages() -> None:
    payload = reservation_payload(
        "o-2", ResultStatus.REJECTED, [REQUESTED], at=AT, reason="", shortages=[SHORT]
    )
    assert json.dumps(payload) == (
        '{"order_id": "o-2", "status": "REJECTED", "items": ['
        '{"product_id": "q", "variant_id": null, "warehouse_id": null, "quantity": 5}], '
        '"at": "2026-01-02T03:04:05.678000+00:00", "shortages": ['
        '{"product_id": "q", "variant_id": null, "warehouse_id": null, "requested": 5, '
        '"available": 2}]}'
    )


def test_times_go_through_the_given_formatter() -> None:
    payload = reservation_payload(
        "o", ResultStatus.RESERVED, [], at=AT, expires_at=EXPIRES, iso=lambda at: f"<{at:%H%M}>"
    )
    assert (payload["at"], payload["expires_at"]) == ("<0304>", "<0319>")


# Every status with what the planner sends along with it.
RESERVATION_CASES = [
    ("o-1", ResultStatus.RESERVED, [HELD, HELD_NO_VARIANT], {"expires_at": EXPIRES}),
    ("o-2", ResultStatus.REJECTED, [REQUESTED], {"shortages": [SHORT]}),
    ("o-3", ResultStatus.COMMIT_FAILED, [REQUESTED], {"shortages": [SHORT]}),
    ("o-4", ResultStatus.COMMITTED, [HELD], {}),
    ("o-5", ResultStatus.RELEASED, [HELD], {"reason": "changed mind"}),
    ("o-6", ResultStatus.RELEASED, [], {}),
    ("o-7", ResultStatus.EXPIRED, [HELD_NO_VARIANT], {}),
    ("o-8", ResultStatus.CANCEL_AFTER_COMMIT, [HELD], {"reason": "too late"}),
    ("o-9", ResultStatus.RESERVED, [BACKORDERED, HELD_NO_VARIANT], {"expires_at": EXPIRES}),
    ("o-10", ResultStatus.BACKORDER_FILLED, [HELD, HELD_NO_VARIANT], {}),
    ("o-11", ResultStatus.EXTENDED, [HELD, HELD_NO_VARIANT], {"expires_at": EXTENDED_TO}),
    ("o-12", ResultStatus.NOT_EXTENDED, [], {"reason": "unknown order"}),
    ("o-13", ResultStatus.NOT_EXTENDED, [HELD], {"reason": "order is COMMITTED"}),
    ("o-14", ResultStatus.RESERVED, [HELD], {"expires_at": EXPIRES, "outcomes": PARTIAL}),
]


@pytest.mark.parametrize(("order_id", "status", "lines", "details"), RESERVATION_CASES)
def test_reservation_events_round_trip(
    order_id: str, status: ResultStatus, lines: list[ReservationLine], details: dict[str, Any]
) -> None:
    payload = reservation_payload(order_id, status, lines, at=AT, **details)
    deadline = details.get("expires_at")
    expires_at = deadline.timestamp() if deadline is not None else None
    parsed = parse_reservation_changed(wire(payload))
    assert parsed == ReservationChanged(order_id, status, expires_at)
    # only the reports leave the hold as it is; everything else sets or ends it
    keeps = status in (ResultStatus.BACKORDER_FILLED, ResultStatus.NOT_EXTENDED)
    assert parsed.changes_hold is not keeps


def test_a_partial_reservation_says_what_each_requested_line_got() -> None:
    payload = reservation_payload(
        "o-1", ResultStatus.RESERVED, [HELD], at=AT, expires_at=EXPIRES, outcomes=PARTIAL
    )
    assert json.dumps(payload["lines"]) == (
        '[{"product_id": "p", "variant_id": "v", "warehouse_id": "wh", "requested": 5, '
        '"reserved": 2, "short": 3}, '
        '{"product_id": "q", "variant_id": null, "warehouse_id": null, "requested": 1, '
        '"reserved": 0, "short": 1}]'
    )
    # an all-or-nothing order's events are as they were: no lines
    assert "lines" not in reservation_payload("o-2", ResultStatus.RESERVED, [HELD], at=AT)


def reservation_body(**change: Any) -> dict[str, Any]:
    """A valid RESERVED body with ``change`` applied; ``...`` removes a field."""
    body: dict[str, Any] = {
        "order_id": "o",
        "status": "RESERVED",
        "items": [],
        "expires_at": "2024-05-01T12:00:00+00:00",
        "at": "2024-05-01T11:45:00+00:00",
    }
    body.update(change)
    return {key: value for key, value in body.items() if value is not ...}


MAY_FIRST_NOON = 1714564800.0


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        (reservation_body(), None, ReservationChanged("o", "RESERVED", MAY_FIRST_NOON)),
        (reservation_body(), "k", ReservationChanged("o", "RESERVED", MAY_FIRST_NOON)),
        # the key names the order when the body does not
        (reservation_body(order_id=...), "k", ReservationChanged("k", "RESERVED", MAY_FIRST_NOON)),
        (reservation_body(order_id=""), "k", ReservationChanged("k", "RESERVED", MAY_FIRST_NOON)),
        (reservation_body(order_id=5), "k", ReservationChanged("k", "RESERVED", MAY_FIRST_NOON)),
        # any other status ends the hold, so its expires_at is never read
        (reservation_body(status="EXPIRED"), None, ReservationChanged("o", "EXPIRED", None)),
        (
            reservation_body(status="COMMITTED", expires_at="tomorrow"),
            None,
            ReservationChanged("o", "COMMITTED", None),
        ),
        (reservation_body(status="ON_HOLD"), None, ReservationChanged("o", "ON_HOLD", None)),
        # EXTENDED carries the new deadline, like RESERVED; NOT_EXTENDED none
        (
            reservation_body(status="EXTENDED"),
            None,
            ReservationChanged("o", "EXTENDED", MAY_FIRST_NOON),
        ),
        (
            reservation_body(status="NOT_EXTENDED", expires_at=..., reason="unknown order"),
            None,
            ReservationChanged("o", "NOT_EXTENDED", None),
        ),
        (
            reservation_body(status="NOT_EXTENDED", expires_at="tomorrow"),
            None,
            ReservationChanged("o", "NOT_EXTENDED", None),
        ),
        (reservation_body(status="", items=...), None, ReservationChanged("o", "", None)),
    ],
)
def test_reservation_events_read_as_the_expiry_schedule_needs(
    body: dict[str, Any], key: str | None, expected: ReservationChanged
) -> None:
    assert parse_reservation_changed(body, key=key) == expected


@pytest.mark.parametrize(
    ("expires_at", "epoch_seconds"),
    [
        ("2024-05-01T12:00:00+00:00", MAY_FIRST_NOON),
        ("2024-05-01T12:00:00Z", MAY_FIRST_NOON),
        ("2024-05-01T14:00:00+02:00", MAY_FIRST_NOON),
        ("2024-05-01T12:00:00", MAY_FIRST_NOON),  # naive means UTC
        (1714564800, MAY_FIRST_NOON),
        (1714564800.5, MAY_FIRST_NOON + 0.5),
    ],
)
def test_expires_at_forms(expires_at: Any, epoch_seconds: float) -> None:
    parsed = parse_reservation_changed(reservation_body(expires_at=expires_at))
    assert parsed.expires_at == epoch_seconds


@pytest.mark.parametrize(
    ("body", "key", "named"),
    [
        ([1], "o", "not a JSON object"),
        (None, "o", "not a JSON object"),
        (reservation_body(order_id=...), None, "no order_id"),
        (reservation_body(order_id=""), "", "no order_id"),
        (reservation_body(status=...), None, "no status"),
        (reservation_body(status=5), None, "no status"),
        (reservation_body(expires_at=...), None, "no expires_at"),
        (reservation_body(expires_at=None), None, "no expires_at"),
        (reservation_body(expires_at="tomorrow"), None, "expires_at is not ISO 8601"),
        (reservation_body(expires_at=True), None, "expires_at must be a date-time"),
        (reservation_body(expires_at=[1]), None, "expires_at must be a date-time"),
        (reservation_body(status="EXTENDED", expires_at=...), None, "EXTENDED o has no expires_at"),
        (reservation_body(status="EXTENDED", expires_at="soon"), None, "expires_at is not ISO"),
    ],
)
def test_unusable_reservation_events_are_refused(body: Any, key: str | None, named: str) -> None:
    with pytest.raises(MalformedEvent, match=f"^inventory-reservations: .*{named}"):
        parse_reservation_changed(body, key=key)


@pytest.mark.parametrize(
    ("status", "changes_hold"),
    [
        ("RESERVED", True),  # a deadline
        ("EXTENDED", True),  # a new deadline in place of the old one
        ("COMMITTED", True),  # the end of the hold
        ("EXPIRED", True),
        ("ON_HOLD", True),  # unknown to this version: ends the hold
        ("BACKORDER_FILLED", False),
        ("NOT_EXTENDED", False),  # a refused extension: the old deadline stands
    ],
)
def test_which_statuses_change_the_hold(status: str, changes_hold: bool) -> None:
    assert parse_reservation_changed(reservation_body(status=status)).changes_hold is changes_hold


def test_a_malformed_event_is_a_value_error() -> None:
    # so a consumer that catches ValueError today keeps catching it
    assert issubclass(MalformedEvent, ValueError)


# --- the contracts -------------------------------------------------------------------------

# The default checker knows date-time only with an optional package: check it here instead.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value).tzinfo is not None


def validate(topic: str, payload: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / f"{topic}.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=FORMATS).validate(wire(payload))


@pytest.mark.parametrize(("order_id", "status", "lines", "details"), RESERVATION_CASES)
def test_built_reservation_events_meet_their_schema(
    order_id: str, status: ResultStatus, lines: list[ReservationLine], details: dict[str, Any]
) -> None:
    validate(
        "inventory-reservations", reservation_payload(order_id, status, lines, at=AT, **details)
    )


@pytest.mark.parametrize(
    ("row", "cause", "order_id"),
    [
        (StockRow("sid", PV, "wh", Levels(3, 2, 5), 7), "RESERVE", "o-1"),
        (StockRow("sid", Sku("p"), "wh", Levels(0, 0, 0), 1), "SET", None),
        (BACKORDERED_ROW, "RESERVE", "o-2"),
        (
            StockRow("sid", PV, "wh", Levels(-3, 0, -3), 9, policy=POLICY, backordered=3),
            "COMMIT",
            "o",
        ),
        (StockRow("sid", PV, "wh", Levels(1, 0, 1), 2, policy=StockPolicy(4)), "SUBTRACT", None),
        (StockRow("sid", PV, "wh", Levels(5, 0, 5), 3, policy=POLICY), "POLICY", None),
    ],
)
def test_built_stock_changed_events_meet_their_schema(
    row: StockRow, cause: str, order_id: str | None
) -> None:
    validate("stock-changed", stock_changed_payload(row, cause, order_id, AT))


ALERTS = [
    Alert(StockAlert.LOW_STOCK, PV, "wh", 4),
    Alert(StockAlert.LOW_STOCK, Sku("q"), "wh", -1),  # below the reorder point and backordered
    Alert(StockAlert.OUT_OF_STOCK, PV, "wh", 0),
    Alert(StockAlert.OUT_OF_STOCK, PV, "wh", -2),
    Alert(StockAlert.OUT_OF_STOCK, PV, None, 0),
    Alert(StockAlert.BACK_IN_STOCK, PV, "wh", 1),
    Alert(StockAlert.BACK_IN_STOCK, Sku("q"), None, 40),
]


def test_the_stock_alert_payload_is_the_contract_byte_for_byte() -> None:
    assert json.dumps(stock_alert_payload(Alert(StockAlert.OUT_OF_STOCK, PV, None, 0), AT)) == (
        '{"alert": "OUT_OF_STOCK", "product_id": "p", "variant_id": "v", "warehouse_id": null, '
        '"sellable": 0, "at": "2026-01-02T03:04:05.678000+00:00"}'
    )


@pytest.mark.parametrize("alert", ALERTS)
def test_built_stock_alerts_meet_their_schema(alert: Alert) -> None:
    validate("stock-alerts", stock_alert_payload(alert, AT))


def test_every_alert_kind_is_in_the_schema() -> None:
    schema = json.loads((SCHEMAS / "stock-alerts.schema.json").read_text())
    assert schema["properties"]["alert"]["enum"] == [kind.value for kind in StockAlert]


def test_the_schemas_examples_meet_their_schema() -> None:
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        topic = path.name.removesuffix(".schema.json")
        for example in json.loads(path.read_text()).get("examples", []):
            validate(topic, example)
    assert json.loads((SCHEMAS / "stock-alerts.schema.json").read_text())["examples"]


def alert_body(**change: Any) -> dict[str, Any]:
    """A valid stock-alerts body with ``change`` applied; ``...`` removes a field."""
    body = {**stock_alert_payload(Alert(StockAlert.LOW_STOCK, PV, "wh", 3), AT), **change}
    return {key: value for key, value in body.items() if value is not ...}


def test_the_bodies_the_refusals_start_from_meet_their_schema() -> None:
    # so each refusal below is about the one change it makes
    validate("stock-changed", stock_body())
    validate("stock-alerts", alert_body())
    validate("inventory-reservations", reservation_body())
    validate("inventory-reservations", reservation_body(items=[ITEM_BODY]))
    validate("inventory-reservations", reservation_body(lines=[LINE_BODY]))
    validate("inventory-reservations", reservation_body(status="EXTENDED"))
    validate("inventory-reservations", NOT_EXTENDED_BODY)


ITEM_BODY = {"product_id": "p", "variant_id": None, "warehouse_id": "w", "quantity": 3}
LINE_BODY = {
    "product_id": "p",
    "variant_id": None,
    "warehouse_id": None,
    "requested": 5,
    "reserved": 3,
    "short": 2,
}
NOT_EXTENDED_BODY = reservation_body(status="NOT_EXTENDED", expires_at=..., reason="unknown order")


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("stock-changed", stock_body(cause="LOST")),
        ("stock-changed", stock_body(stock_id="sid")),  # readable, but not the contract
        ("stock-changed", stock_body(reserved=-1)),
        ("stock-changed", stock_body(backordered=-1)),
        ("stock-changed", stock_body(safety_stock=-1)),
        ("stock-changed", stock_body(reorder_point=-1)),
        ("stock-changed", stock_body(backorder_limit=1.5)),
        ("stock-changed", stock_body(sellable=None)),
        # produced from this version on: an event without them is the previous contract
        *(("stock-changed", stock_body(**{field: ...})) for field in POLICY_FIELDS),
        ("stock-alerts", alert_body(alert="RESTOCKED")),
        ("stock-alerts", alert_body(warehouse_id=...)),
        ("stock-alerts", alert_body(warehouse_id="")),
        ("stock-alerts", alert_body(sellable=1.5)),
        ("stock-alerts", alert_body(at="2024-05-01 11:45:00")),
        ("stock-alerts", alert_body(reorder_point=5)),
        ("stock-alerts", alert_body(warehouse_id=None)),  # LOW_STOCK is a row's alert only
        ("stock-alerts", alert_body(alert="OUT_OF_STOCK", sellable=1)),
        ("stock-alerts", alert_body(alert="BACK_IN_STOCK", sellable=0)),
        ("stock-alerts", alert_body(alert="OUT_OF_STOCK", warehouse_id=None, sellable=-1)),
        ("inventory-reservations", reservation_body(status="ON_HOLD")),
        ("inventory-reservations", reservation_body(at="2024-05-01 11:45:00")),
        ("inventory-reservations", reservation_body(items=[{**ITEM_BODY, "backordered": 0}])),
        ("inventory-reservations", reservation_body(items=[{**ITEM_BODY, "backordered": -1}])),
        ("inventory-reservations", reservation_body(items=[{**ITEM_BODY, "backordered": "2"}])),
        ("inventory-reservations", reservation_body(status="EXTENDED", expires_at=...)),
        ("inventory-reservations", {k: v for k, v in NOT_EXTENDED_BODY.items() if k != "reason"}),
        ("inventory-reservations", {**NOT_EXTENDED_BODY, "expires_at": "2024-05-01T12:00:00Z"}),
        ("inventory-reservations", reservation_body(lines=[{**LINE_BODY, "short": -1}])),
        ("inventory-reservations", reservation_body(lines=[{**LINE_BODY, "requested": 0}])),
        ("inventory-reservations", reservation_body(lines=[{**LINE_BODY, "lost": 1}])),
        (
            "inventory-reservations",
            reservation_body(lines=[{k: v for k, v in LINE_BODY.items() if k != "short"}]),
        ),
    ],
)
def test_the_schema_check_refuses_what_the_contract_does_not_allow(
    topic: str, payload: dict[str, Any]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(topic, payload)


def test_an_event_from_before_policies_still_parses() -> None:
    # the schema wants the policy fields; the service's consumers read their absence as the
    # defaults (docs/events/README.md, Compatibility)
    with pytest.raises(jsonschema.ValidationError, match="sellable"):
        validate("stock-changed", BEFORE_POLICIES)
    assert parse_stock_changed(BEFORE_POLICIES) == StockChanged(
        "p", None, "w", 1, 0, 1, 1, "", datetime(2025, 1, 1, tzinfo=UTC)
    )


def test_a_planned_batch_publishes_every_event_within_its_schema() -> None:
    sku = Sku("p")
    due = AT - timedelta(seconds=1)
    backorders, low, empty, scarce = Sku("b"), Sku("l"), Sku("e"), Sku("h")
    snapshot = Snapshot(
        orders={"late": OrderRow("late", OrderState.RESERVED, (Item(sku, 1),), 60, due, 1)},
        reservations={
            "late": [
                ReservationRow(
                    RESERVATION_ID, "late", "s1", sku, "w", 1, ReservationStatus.PENDING, due
                )
            ]
        },
        stocks={
            "s1": StockRow("s1", sku, "w", Levels(5, 1, 6), 3),
            "s2": StockRow(
                "s2", backorders, "w", Levels(1, 0, 1), 1, policy=StockPolicy(0, None, 5)
            ),
            "s3": StockRow("s3", low, "w", Levels(8, 0, 8), 1, policy=StockPolicy(1, 5, 0)),
            "s4": StockRow("s4", empty, "w", Levels(0, 0, 0), 1),
            "s5": StockRow("s5", scarce, "w", Levels(2, 0, 2), 1),
        },
        warehouses={"w": Warehouse("w", 1, True)},
    )
    items = [{"product_id": "p", "quantity": 2}]
    commands: list[Command] = [
        v.reserve("a", items, 60, v.Limits(), source=Source.STREAM),  # RESERVED
        Extend("a", 120, Source.STREAM, "e5"),  # EXTENDED
        Extend("ghost", 120, Source.STREAM, "e6"),  # NOT_EXTENDED: unknown order
        Commit("a", Source.STREAM, "e1"),  # COMMITTED
        Extend("a", 120, Source.STREAM, "e7"),  # NOT_EXTENDED: order is COMMITTED
        Release("a", "too late", Source.STREAM, "e2"),  # CANCEL_AFTER_COMMIT
        Return("a", (Item(sku, 1),), True, "too small", Source.STREAM, "e8"),  # RETURNED
        Return("a", (Item(sku, 2),), False, None, Source.STREAM, "e9"),  # RETURN_REFUSED
        v.reserve("b", items, 60, v.Limits(), source=Source.STREAM),  # RESERVED
        Release("b", "changed mind", Source.STREAM, "e3"),  # RELEASED
        Expire("late"),  # EXPIRED
        v.reserve("c", [{"product_id": "p", "quantity": 9}], 60, v.Limits(), source=Source.STREAM),
        # REJECTED above, COMMIT_FAILED below: paid, and still too little stock
        Commit("c", Source.STREAM, "e4"),
        UpdateStock(sku, "w", StockOperation.ADD, 4, "restock"),
        # RESERVED with 2 units backordered (available -2), then BACKORDER_FILLED by a restock
        v.reserve("d", [{"product_id": "b", "quantity": 3}], 60, v.Limits(), source=Source.STREAM),
        UpdateStock(backorders, "w", StockOperation.ADD, 4, "restock"),
        # LOW_STOCK and OUT_OF_STOCK, for the row and the SKU; BACK_IN_STOCK for both
        UpdateStock(low, "w", StockOperation.SUBTRACT, 8, "shrinkage"),
        UpdateStock(empty, "w", StockOperation.ADD, 3, "restock"),
        # RESERVED with lines: 2 of the 5 units wanted
        replace(
            v.reserve(
                "f", [{"product_id": "h", "quantity": 5}], 60, v.Limits(), source=Source.STREAM
            ),
            allow_partial=True,
        ),
    ]
    uuids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count())
    plan = plan_batch(
        snapshot,
        commands,
        duplicates=frozenset(),
        now=AT,
        allow_split=True,
        new_id=lambda: next(uuids),
    )
    outbox = plan.outbox(
        AT,
        stock_changed_topic="stock-changed",
        reservations_topic="inventory-reservations",
        stock_alerts_topic="stock-alerts",
    )
    for message in outbox:
        validate(message.topic, message.payload)
    published = {m.payload["status"] for m in outbox if m.topic == "inventory-reservations"}
    assert published == set(ResultStatus)
    alerts = {m.payload["alert"] for m in outbox if m.topic == "stock-alerts"}
    assert alerts == set(StockAlert)
    [reserved_d] = [m.payload for m in outbox if m.key == "d" and m.payload["status"] == "RESERVED"]
    assert reserved_d["items"][0]["backordered"] == 2
    by_order = {
        (m.key, m.payload["status"]): m.payload
        for m in outbox
        if m.topic == "inventory-reservations"
    }
    extended = by_order["a", "EXTENDED"]
    assert (
        extended["expires_at"] == (AT + timedelta(seconds=120)).replace(microsecond=0).isoformat()
    )
    assert by_order["ghost", "NOT_EXTENDED"]["reason"] == "unknown order"
    assert by_order["a", "NOT_EXTENDED"]["reason"] == "order is COMMITTED"
    assert by_order["f", "RESERVED"]["lines"] == [
        {
            "product_id": "h",
            "variant_id": None,
            "warehouse_id": None,
            "requested": 5,
            "reserved": 2,
            "short": 3,
        }
    ]
