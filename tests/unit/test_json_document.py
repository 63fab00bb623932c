"""The statements' JSON documents (msgspec) read as the standard library's encoder wrote them."""

import json
from datetime import UTC, datetime

import pytest

from db.ledger import json_document
from db.plan_sql import plan_document
from service.domain import validation as v
from service.domain.commands import Source
from service.domain.plan import OutboxMessage
from service.domain.planner import plan_batch
from service.domain.snapshot import Snapshot, StockRow, Warehouse
from service.domain.values import Levels, OrderState, ReservationStatus, Sku

NOW = datetime(2026, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)
STDLIB = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def planned_document() -> dict:
    """The document of a batch that reserves, rejects and changes a row with a policy."""
    snap = Snapshot(
        orders={},
        stocks={
            "s1": StockRow("s1", Sku("caf\u00e9", "gr\u00fcn"), "w", Levels(3, 0, 3), 1),
            "s2": StockRow("s2", Sku("big"), "w", Levels(10**15, 0, 10**15), 7),
        },
        warehouses={"w": Warehouse("w", 1, True)},
    )
    limits = v.Limits()
    commands = [
        v.reserve(
            "\u00f6rder-1",
            [{"product_id": "caf\u00e9", "variant_id": "gr\u00fcn", "quantity": 2}],
            60,
            limits,
            source=Source.STREAM,
            event_id="e-1",
        ),
        v.reserve(
            "o-2",
            [{"product_id": "caf\u00e9", "variant_id": "gr\u00fcn", "quantity": 2}],
            60,
            limits,
        ),
        v.reserve("o-3", [{"product_id": "big", "quantity": 5}], None, limits),
    ]
    ids = iter(f"00000000-0000-0000-0000-00000000000{i}" for i in range(10))
    plan = plan_batch(
        snap, commands, duplicates=frozenset(), now=NOW, allow_split=True, new_id=lambda: next(ids)
    )
    outbox = plan.outbox(
        NOW, stock_changed_topic="sc", reservations_topic="r", stock_alerts_topic="a"
    )
    assert all(isinstance(m, OutboxMessage) for m in outbox)
    return plan_document(plan, outbox)


def test_a_plans_document_reads_as_the_standard_librarys():
    document = planned_document()
    assert document["reservations"] and document["orders"] and document["outbox"]
    assert json.loads(json_document(document)) == json.loads(STDLIB.encode(document))


def test_enums_tuples_and_text_encode_as_their_json_values():
    value = {
        "state": OrderState.RESERVED,
        "row": ("id", ReservationStatus.PENDING, None, True, 2**62, '\u00e9\u2028"\\\n'),
        "message": OutboxMessage("topic", "key", {"at": NOW.isoformat()}),
    }
    encoded = json_document(value)
    assert json.loads(encoded) == {
        "state": "RESERVED",
        "row": ["id", "PENDING", None, True, 2**62, '\u00e9\u2028"\\\n'],
        "message": ["topic", "key", {"at": "2026-01-01T12:30:15.123456+00:00"}],
    }
    assert json.loads(encoded) == json.loads(STDLIB.encode(value))


def test_a_value_json_cannot_hold_is_refused():
    with pytest.raises(TypeError):
        json_document({"x": object()})
