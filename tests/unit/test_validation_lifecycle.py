"""Validation of the reservation lifecycle's input: Extend's TTL and Reserve's allow_partial."""

import pytest

from service.domain import validation as v
from service.domain.commands import Extend, Source
from service.domain.errors import InvalidArgument

LIMITS = v.Limits(
    max_id_length=8, min_ttl_seconds=30, default_ttl_seconds=900, max_ttl_seconds=3_600
)


def item(quantity=1, product="p"):
    return {"product_id": product, "quantity": quantity}


# -- extend --


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        pytest.param(30, 30, id="the minimum"),
        pytest.param(600, 600, id="within"),
        pytest.param(3_600, 3_600, id="the maximum"),
    ],
)
def test_extend_takes_a_ttl_within_the_bounds_of_a_reservation(ttl, expected):
    assert v.extend("o-1", ttl, LIMITS) == Extend("o-1", expected)
    # the same bounds as ReserveStock's: what one accepts the other does
    assert v.reserve("o-1", [item()], ttl, LIMITS).ttl_seconds == expected


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        pytest.param(None, "ttl_seconds: required", id="absent"),
        pytest.param(0, "ttl_seconds: must be between 30 and 3600, got 0", id="0"),
        pytest.param(3_601, "ttl_seconds: must be between 30 and 3600, got 3601", id="over"),
    ],
)
def test_extend_has_no_default_ttl_and_says_the_bounds(ttl, message):
    # a reservation's absent or 0 TTL is the default; an extension must say how long
    with pytest.raises(InvalidArgument) as refused:
        v.extend("o-1", ttl, LIMITS)
    assert refused.value.message == message


@pytest.mark.parametrize(
    ("order_id", "ttl", "field"),
    [
        pytest.param("o-1", None, "ttl_seconds", id="absent"),
        pytest.param("o-1", 0, "ttl_seconds", id="0"),
        pytest.param("o-1", 29, "ttl_seconds", id="below the minimum"),
        pytest.param("o-1", 3_601, "ttl_seconds", id="over the maximum"),
        pytest.param("o-1", -1, "ttl_seconds", id="negative"),
        pytest.param("o-1", 2**63 - 1, "ttl_seconds", id="int64 max"),
        pytest.param("o-1", 60.0, "ttl_seconds", id="a float"),
        pytest.param("o-1", "60", "ttl_seconds", id="a string"),
        pytest.param("o-1", True, "ttl_seconds", id="a boolean"),
        pytest.param("o-1", False, "ttl_seconds", id="False is not 0"),
        pytest.param("", 60, "order_id", id="no order"),
        pytest.param("  ", 60, "order_id", id="a blank order"),
        pytest.param(None, 60, "order_id", id="a null order"),
        pytest.param(7, 60, "order_id", id="a number as order"),
        pytest.param("o" * 9, 60, "order_id", id="an order id too long"),
        pytest.param("o\x00", 60, "order_id", id="a control character"),
    ],
)
def test_extend_is_refused_with_the_field_named(order_id, ttl, field):
    with pytest.raises(InvalidArgument) as refused:
        v.extend(order_id, ttl, LIMITS)
    assert refused.value.field == field
    assert refused.value.message.startswith(f"{field}:")


def test_extend_carries_the_source_and_the_event():
    command = v.extend("o-1", 60, LIMITS, source=Source.STREAM, event_id="ev-1")
    assert command == Extend("o-1", 60, Source.STREAM, "ev-1")
    assert v.extend("o-1", 60, LIMITS) == Extend("o-1", 60, Source.API, None)


# -- reserve: allow_partial --


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param({}, False, id="absent: all or nothing"),
        pytest.param({"allow_partial": None}, False, id="null: all or nothing"),
        pytest.param({"allow_partial": False}, False, id="False"),
        pytest.param({"allow_partial": True}, True, id="True"),
    ],
)
def test_reserve_sets_allow_partial(given, expected):
    command = v.reserve("o-1", [item(2), item(3)], 60, LIMITS, **given)
    assert command.allow_partial is expected
    assert command.items == v.reserve("o-1", [item(5)], 60, LIMITS).items  # merged alike


@pytest.mark.parametrize("value", [1, 0, "true", "", 1.0, [], {}], ids=repr)
def test_allow_partial_that_is_no_boolean_is_refused(value):
    with pytest.raises(InvalidArgument) as refused:
        v.reserve("o-1", [item()], 60, LIMITS, allow_partial=value)
    assert refused.value.field == "allow_partial"


def test_the_order_and_items_are_checked_before_allow_partial():
    with pytest.raises(InvalidArgument) as refused:
        v.reserve("", [item()], 60, LIMITS, allow_partial="yes")
    assert refused.value.field == "order_id"
