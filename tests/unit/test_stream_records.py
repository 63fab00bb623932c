"""Decoding of raw order events: every rejection names its field; valid events become commands."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from service.domain.commands import Commit, Extend, OrderEventKind, Release, Reserve, Source
from service.domain.validation import Limits
from service.domain.values import Item, Sku
from streams.records import KIND_LABELS, InvalidEvent, TopicKinds, dead_letter, decode_order_event

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"
LIMITS = Limits(max_items_per_order=3, max_quantity_per_item=50)
WHEN = "2024-05-01T12:00:00Z"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validate(name: str, payload: bytes | dict[str, Any]) -> None:
    body = json.loads(payload) if isinstance(payload, bytes) else payload
    jsonschema.Draft202012Validator(
        schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(body)


def created(**fields: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": "e-1",
        "order_id": "o-1",
        "items": [{"product_id": "p-1", "variant_id": "v-1", "quantity": 2}],
        "occurred_at": WHEN,
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def envelope(event_id: str, order_id: str, **fields: Any) -> bytes:
    """An order-paid or order-cancelled event, as a producer sends it."""
    return json.dumps(
        {"event_id": event_id, "order_id": order_id, "occurred_at": WHEN, **fields}
    ).encode()


def test_order_created_becomes_a_stream_reserve() -> None:
    cmd = decode_order_event(OrderEventKind.CREATED, created(ttl_seconds=60), LIMITS)
    assert cmd == Reserve(
        order_id="o-1",
        items=(Item(Sku("p-1", "v-1"), 2),),
        ttl_seconds=60,
        source=Source.STREAM,
        event_id="e-1",
    )


def test_paid_and_cancelled_become_commit_and_release() -> None:
    paid = envelope("e-2", "o-1")
    cancelled = envelope("e-3", "o-1", reason="customer")
    assert decode_order_event(OrderEventKind.PAID, paid, LIMITS) == Commit(
        "o-1", source=Source.STREAM, event_id="e-2"
    )
    assert decode_order_event(OrderEventKind.CANCELLED, cancelled, LIMITS) == Release(
        "o-1", reason="customer", source=Source.STREAM, event_id="e-3"
    )


def extended(**fields: Any) -> bytes:
    """An order-extended event, as a producer sends it; ``...`` removes a field."""
    body: dict[str, Any] = {
        "event_id": "e-4",
        "order_id": "o-1",
        "ttl_seconds": 600,
        "occurred_at": WHEN,
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_order_extended_becomes_a_stream_extend() -> None:
    cmd = decode_order_event(OrderEventKind.EXTENDED, extended(), LIMITS)
    assert cmd == Extend("o-1", 600, source=Source.STREAM, event_id="e-4")
    assert cmd.kind is OrderEventKind.EXTENDED


@pytest.mark.parametrize("ttl", [1, 86_400])  # the bounds of order-created's ttl_seconds
def test_order_extended_takes_the_ttl_bounds_of_order_created(ttl: int) -> None:
    cmd = decode_order_event(OrderEventKind.EXTENDED, extended(ttl_seconds=ttl), Limits())
    assert isinstance(cmd, Extend) and cmd.ttl_seconds == ttl
    created_cmd = decode_order_event(OrderEventKind.CREATED, created(ttl_seconds=ttl), Limits())
    assert isinstance(created_cmd, Reserve) and created_cmd.ttl_seconds == ttl


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (None, "empty", "no value"),
        (b"{not json", "json", "not valid JSON"),
        (b"[]", "invalid", "must be a JSON object"),
        (extended(event_id=...), "invalid", "event_id: must be a string"),
        (extended(occurred_at=...), "invalid", "occurred_at"),
        (extended(order_id=...), "invalid", "order_id: must be a string"),
        (extended(order_id=""), "invalid", "order_id: must not be empty"),
        (extended(order_id="o" * 129), "invalid", "order_id: longer than 128"),
        # required: unlike order-created's, an absent, null or 0 TTL is no default
        (extended(ttl_seconds=...), "invalid", "ttl_seconds: required"),
        (extended(ttl_seconds=None), "invalid", "ttl_seconds: required"),
        (extended(ttl_seconds=0), "invalid", "ttl_seconds: must be between 1 and 86400, got 0"),
        (extended(ttl_seconds=-5), "invalid", "ttl_seconds: must be between"),
        (extended(ttl_seconds=86_401), "invalid", "ttl_seconds: must be between 1 and 86400"),
        (extended(ttl_seconds="60"), "invalid", "ttl_seconds: must be an integer"),
        (extended(ttl_seconds=60.0), "invalid", "ttl_seconds: must be an integer"),
        (extended(ttl_seconds=True), "invalid", "ttl_seconds: must be an integer"),
    ],
)
def test_bad_order_extended_is_invalid_with_a_reason(
    raw: bytes | None, error: str, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_order_event(OrderEventKind.EXTENDED, raw, Limits())
    assert caught.value.error == error
    assert reason in caught.value.reason, caught.value.reason


def test_an_invalid_order_extended_keeps_its_event_id_for_the_dlq() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_order_event(OrderEventKind.EXTENDED, extended(ttl_seconds=0), LIMITS)
    assert caught.value.event_id == "e-4"


def test_order_extended_follows_the_configured_ttl_bounds() -> None:
    limits = Limits(min_ttl_seconds=60, default_ttl_seconds=300, max_ttl_seconds=3600)
    with pytest.raises(InvalidEvent, match="ttl_seconds: must be between 60 and 3600, got 59"):
        decode_order_event(OrderEventKind.EXTENDED, extended(ttl_seconds=59), limits)
    cmd = decode_order_event(OrderEventKind.EXTENDED, extended(ttl_seconds=3600), limits)
    assert isinstance(cmd, Extend) and cmd.ttl_seconds == 3600


@pytest.mark.parametrize(
    ("value", "allow_partial"), [(..., False), (None, False), (False, False), (True, True)]
)
def test_order_created_may_allow_a_partial_reservation(value: Any, allow_partial: bool) -> None:
    cmd = decode_order_event(OrderEventKind.CREATED, created(allow_partial=value), LIMITS)
    assert isinstance(cmd, Reserve) and cmd.allow_partial is allow_partial
    assert cmd.items == (Item(Sku("p-1", "v-1"), 2),) and cmd.event_id == "e-1"


@pytest.mark.parametrize("value", ["true", 1, 0, "yes", [True], {"on": True}])
def test_allow_partial_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_order_event(OrderEventKind.CREATED, created(allow_partial=value), LIMITS)
    assert caught.value.error == "invalid"
    assert caught.value.reason == "allow_partial: must be true or false"
    assert caught.value.event_id == "e-1"


def test_every_order_topic_has_its_kind_and_a_metric_label() -> None:
    kinds = TopicKinds("c", "p", "x", "e", "r")
    assert [kinds.kind_of(name) for _, name in kinds.pairs()] == [
        OrderEventKind.CREATED,
        OrderEventKind.PAID,
        OrderEventKind.CANCELLED,
        OrderEventKind.EXTENDED,
        OrderEventKind.RETURNED,
    ]
    with pytest.raises(KeyError):
        kinds.kind_of("stock-changed")
    assert set(KIND_LABELS) == {kind for kind, _ in kinds.pairs()}
    assert KIND_LABELS[OrderEventKind.EXTENDED] == "order-extended"


def test_unknown_fields_are_ignored() -> None:
    cmd = decode_order_event(OrderEventKind.CREATED, created(channel="web"), LIMITS)
    assert isinstance(cmd, Reserve)


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (None, "empty", "no value"),
        (b"", "empty", "no value"),
        (b"{not json", "json", "not valid JSON"),
        (b"\xff\xfe\xfa", "json", "not"),
        (b"[1, 2]", "invalid", "must be a JSON object"),
        (b'"text"', "invalid", "must be a JSON object"),
        (created(event_id=...), "invalid", "event_id: must be a string"),
        (created(event_id=""), "invalid", "event_id: must not be empty"),
        (created(occurred_at=...), "invalid", "occurred_at"),
        (created(occurred_at="yesterday"), "invalid", "occurred_at"),
        (created(occurred_at=1714564800), "invalid", "occurred_at"),
        (created(order_id=...), "invalid", "order_id: must be a string"),
        (created(order_id=17), "invalid", "order_id: must be a string"),
        (created(items=...), "invalid", "items: must be a list"),
        (created(items=[]), "invalid", "items: must not be empty"),
        (created(items=[{"product_id": "p", "quantity": 1}] * 4), "invalid", "over the limit"),
        (created(items=["p-1"]), "invalid", "items[0]: must be an object"),
        (created(items=[{"quantity": 1}]), "invalid", "items[0].product_id"),
        (created(items=[{"product_id": "p", "quantity": 0}]), "invalid", "items[0].quantity"),
        (created(items=[{"product_id": "p", "quantity": -3}]), "invalid", "items[0].quantity"),
        (created(items=[{"product_id": "p", "quantity": 51}]), "invalid", "items[0].quantity"),
        (created(items=[{"product_id": "p", "quantity": 2.0}]), "invalid", "must be an integer"),
        (created(items=[{"product_id": "p", "quantity": "2"}]), "invalid", "must be an integer"),
        (created(items=[{"product_id": "p", "quantity": True}]), "invalid", "must be an integer"),
        (created(ttl_seconds=-5), "invalid", "ttl_seconds"),
        (created(ttl_seconds="60"), "invalid", "ttl_seconds"),
    ],
)
def test_bad_order_created_is_invalid_with_a_reason(
    raw: bytes | None, error: str, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_order_event(OrderEventKind.CREATED, raw, LIMITS)
    assert caught.value.error == error
    assert reason in caught.value.reason


def test_an_invalid_event_keeps_its_event_id_for_the_dlq() -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_order_event(OrderEventKind.CREATED, created(items=[]), LIMITS)
    assert caught.value.event_id == "e-1"


def test_paid_without_order_id_is_invalid() -> None:
    raw = json.dumps({"event_id": "e", "occurred_at": WHEN}).encode()
    with pytest.raises(InvalidEvent, match="order_id"):
        decode_order_event(OrderEventKind.PAID, raw, LIMITS)


def test_cancel_reason_over_the_limit_is_invalid() -> None:
    raw = envelope("e", "o", reason="x" * 600)
    with pytest.raises(InvalidEvent, match="reason"):
        decode_order_event(OrderEventKind.CANCELLED, raw, Limits())


def test_events_validate_against_their_schemas() -> None:
    items = [  # optional fields absent or null, as producers send them
        {"product_id": "p", "quantity": 1, "variant_id": None, "warehouse_id": None},
        {"product_id": "q", "quantity": 2, "variant_id": "v"},
    ]
    validate("order-created", created(items=items, ttl_seconds=None))
    validate("order-created", created(ttl_seconds=0))
    validate("order-paid", envelope("e", "o"))
    validate("order-cancelled", envelope("e", "o", reason=None))
    validate("order-cancelled", envelope("e", "o", reason="customer"))
    for allow_partial in (True, False, None):
        validate("order-created", created(allow_partial=allow_partial))
    validate("order-extended", extended())
    validate("order-extended", extended(ttl_seconds=1, channel="web"))


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("order-extended", extended(ttl_seconds=...)),
        ("order-extended", extended(ttl_seconds=None)),
        ("order-extended", extended(ttl_seconds=0)),
        ("order-extended", extended(ttl_seconds=86_401)),
        ("order-extended", extended(ttl_seconds="60")),
        ("order-extended", extended(order_id="")),
        ("order-extended", extended(event_id=...)),
        ("order-extended", extended(occurred_at=...)),
        ("order-created", created(allow_partial="true")),
        ("order-created", created(allow_partial=1)),
    ],
)
def test_the_schemas_reject_what_the_decoder_rejects(name: str, raw: bytes) -> None:
    kind = OrderEventKind.EXTENDED if name == "order-extended" else OrderEventKind.CREATED
    with pytest.raises(InvalidEvent):
        decode_order_event(kind, raw, Limits())
    with pytest.raises(jsonschema.ValidationError):
        validate(name, raw)


def test_the_schema_rejects_what_the_decoder_rejects() -> None:
    for bad in (created(items=[{"product_id": "p", "quantity": 0}]), created(occurred_at=...)):
        with pytest.raises(jsonschema.ValidationError):
            validate("order-created", bad)


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = dead_letter(
        topic="order-created",
        partition=3,
        offset=41,
        key=b"o-1",
        value=b"\x00{broken",
        error="json",
        reason="not valid JSON",
    )
    validate("order-events-dlq", letter.dumps())
    body = json.loads(letter.dumps())
    assert base64.b64decode(body["value_base64"]) == b"\x00{broken"
    assert body["key"] == "o-1" and body["partition"] == 3 and body["offset"] == 41
    empty = dead_letter(
        topic="t", partition=0, offset=0, key=None, value=None, error="empty", reason="x"
    )
    validate("order-events-dlq", empty.dumps())
