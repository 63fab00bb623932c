"""The reservation TTL comes from the event or the request, defaults, and is bounded by Settings.

Out of bounds is an InvalidArgument naming ``ttl_seconds`` (the stream sends it to the DLQ,
the API answers INVALID_ARGUMENT); it is never clamped.
"""

from __future__ import annotations

import json

import pytest

from service.api.generated import inventory_pb2 as pb
from service.api.mapping import reserve as reserve_request
from service.bootstrap import limits_from
from service.config import Settings
from service.domain import validation as v
from service.domain.commands import OrderEventKind
from service.domain.errors import InvalidArgument
from streams.records import InvalidEvent, decode_order_event

SETTINGS = Settings(min_ttl_seconds=10, default_ttl_seconds=60, max_ttl_seconds=100)
LIMITS = limits_from(SETTINGS)
ITEMS = [{"product_id": "p", "quantity": 1}]


def test_the_settings_bound_the_ttl() -> None:
    assert (LIMITS.min_ttl_seconds, LIMITS.default_ttl_seconds, LIMITS.max_ttl_seconds) == (
        10,
        60,
        100,
    )


def test_the_default_is_900_seconds() -> None:
    assert Settings().default_ttl_seconds == 900
    assert v.reserve("o", ITEMS, None, limits_from(Settings())).ttl_seconds == 900


@pytest.mark.parametrize(("given", "kept"), [(10, 10), (100, 100), (None, 60), (0, 60)])
def test_ttls_within_bounds_are_kept_and_absent_means_the_default(
    given: int | None, kept: int
) -> None:
    assert v.reserve("o", ITEMS, given, LIMITS).ttl_seconds == kept


@pytest.mark.parametrize("given", [9, 101, -1, 2.5, "60", True])
def test_ttls_out_of_bounds_are_refused_not_clamped(given: object) -> None:
    with pytest.raises(InvalidArgument) as refused:
        v.reserve("o", ITEMS, given, LIMITS)
    assert refused.value.field == "ttl_seconds"


def created(ttl: object) -> bytes:
    return json.dumps(
        {
            "event_id": "e1",
            "order_id": "o1",
            "items": ITEMS,
            "ttl_seconds": ttl,
            "occurred_at": "2024-05-01T12:00:00Z",
        }
    ).encode()


def test_an_order_created_event_carries_its_ttl() -> None:
    command = decode_order_event(OrderEventKind.CREATED, created(42), LIMITS)
    assert command.ttl_seconds == 42  # type: ignore[union-attr]


@pytest.mark.parametrize("ttl", [5, 1_000])
def test_an_order_created_event_out_of_bounds_is_a_dead_letter(ttl: int) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_order_event(OrderEventKind.CREATED, created(ttl), LIMITS)
    assert "ttl_seconds" in refused.value.reason


def test_reserve_stock_out_of_bounds_is_invalid_argument() -> None:
    request = pb.ReserveStockRequest(order_id="o", ttl_seconds=101)
    request.items.add(product_id="p", quantity=1)
    with pytest.raises(InvalidArgument) as refused:
        reserve_request(request, LIMITS)
    assert refused.value.field == "ttl_seconds"
    request.ttl_seconds = 100
    assert reserve_request(request, LIMITS).ttl_seconds == 100
