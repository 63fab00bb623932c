"""Page tokens and listing requests (service/domain/listing.py), and the pure helpers of their SQL
(db/stock_lists.py): a token round-trips, and any other string (garbled, edited, forged with a
bad key, or issued for other filters or the other method) is InvalidArgument naming
``page_token``, never another error."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.stock_lists import like_prefix, prefix_successor
from service.domain import listing
from service.domain.errors import InvalidArgument
from service.domain.listing import (
    LIST_MOVEMENTS,
    LIST_STOCK,
    MovementFilter,
    StockFilter,
    encode_token,
    movement_token,
    stock_token,
)
from service.domain.validation import Limits

LIMITS = Limits()
STOCK_KEY = ("prod-1", "", "wh-east", "5b6f5a3e-64f3-4ad5-9f37-3d6f0f1c2a10")
FILTER = StockFilter(warehouse_id="wh-east", out_of_stock=True)
SINCE = datetime(2026, 12, 1, tzinfo=UTC)
MOVEMENTS = MovementFilter(product_id="prod-1", operation="RESERVE", since=SINCE)


def stock_request(**fields: Any) -> listing.StockListing:
    values: dict[str, Any] = {
        "page_size": 0,
        "page_token": "",
        "warehouse_id": "wh-east",
        "product_id_prefix": "",
        "below_reorder_point": False,
        "out_of_stock": True,
        "backordered": False,
    }
    return listing.stock_listing(**(values | fields), limits=LIMITS)


def movement_request(**fields: Any) -> listing.MovementListing:
    values: dict[str, Any] = {
        "page_size": 0,
        "page_token": "",
        "product_id": "prod-1",
        "variant_id": "",
        "warehouse_id": "",
        "order_id": "",
        "operation": "RESERVE",
        "since": SINCE,
        "until": None,
        "newest_first": False,
    }
    return listing.movement_listing(**(values | fields), limits=LIMITS)


def refused(field: str, call: Any, *args: Any, **kwargs: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        call(*args, **kwargs)
    assert caught.value.field == field, caught.value
    return caught.value


def payload(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return decoded


def pack(document: Any) -> str:
    raw = json.dumps(document).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(method: str, filters: list[Any], key: Any) -> str:
    """A token with the right digests (anyone can compute them) around any key, any text."""
    scope = listing._digest([method, filters])
    return pack({"v": 1, "k": key, "f": scope, "d": listing._digest([scope, key])})


# -- round trips --


def test_a_stock_token_round_trips() -> None:
    token = stock_token(FILTER, STOCK_KEY)
    assert token.isascii() and "=" not in token and "+" not in token and "/" not in token
    assert stock_request(page_token=token).after == STOCK_KEY


def test_a_movement_token_round_trips() -> None:
    token = movement_token(MOVEMENTS, 42)
    assert movement_request(page_token=token).after == 42
    assert movement_request(page_token=movement_token(MOVEMENTS, 2**63 - 1)).after == 2**63 - 1


def test_keys_of_any_text_round_trip() -> None:
    key = ("prodé-%_\\'\"", "变体", "wh-🙂", STOCK_KEY[3])
    assert stock_request(page_token=stock_token(FILTER, key)).after == key


def test_no_token_is_the_first_page_and_page_size_may_change_between_pages() -> None:
    assert stock_request().after is None
    token = stock_token(FILTER, STOCK_KEY)
    assert stock_request(page_token=token, page_size=7).page_size == 7
    assert stock_request(page_token=token, page_size=1000).after == STOCK_KEY


# -- page sizes --


@pytest.mark.parametrize(("given_size", "expected"), [(0, 100), (1, 1), (100, 100), (1000, 1000)])
def test_page_sizes(given_size: int, expected: int) -> None:
    assert stock_request(page_size=given_size).page_size == expected
    assert movement_request(page_size=given_size).page_size == expected


@pytest.mark.parametrize("bad", [-1, -(2**31), 1001, 2**31 - 1, True, 1.5, "10"])
def test_page_sizes_out_of_bounds_are_refused_never_clamped(bad: Any) -> None:
    refused("page_size", stock_request, page_size=bad)
    refused("page_size", movement_request, page_size=bad)


# -- tokens refused --


def test_a_token_used_with_other_filters_is_refused() -> None:
    token = stock_token(FILTER, STOCK_KEY)
    error = refused("page_token", stock_request, page_token=token, warehouse_id="wh-west")
    assert "other filters" in error.message
    refused("page_token", stock_request, page_token=token, backordered=True)
    refused("page_token", stock_request, page_token=token, product_id_prefix="prod")

    moved = movement_token(MOVEMENTS, 42)
    refused("page_token", movement_request, page_token=moved, newest_first=True)
    refused("page_token", movement_request, page_token=moved, operation="COMMIT")
    refused("page_token", movement_request, page_token=moved, since=SINCE + timedelta(seconds=1))
    refused("page_token", movement_request, page_token=moved, variant_id="v")


def test_a_token_of_the_other_method_is_refused() -> None:
    # a movement token for filters that canonicalize alike still names the other method
    stock = stock_token(FILTER, STOCK_KEY)
    refused("page_token", movement_request, page_token=stock)
    same_shape = encode_token(LIST_MOVEMENTS, FILTER.canonical(), [1])
    refused("page_token", stock_request, page_token=same_shape)


def test_an_edited_token_is_refused() -> None:
    token = stock_token(FILTER, STOCK_KEY)
    document = payload(token)
    edited_key = document | {"k": ["prod-2", *document["k"][1:]]}
    refused("page_token", stock_request, page_token=pack(edited_key))
    edited_digest = document | {"d": "0" * 32}
    refused("page_token", stock_request, page_token=pack(edited_digest))
    edited_scope = document | {"f": "0" * 32}  # and d no longer matches either
    refused("page_token", stock_request, page_token=pack(edited_scope))
    refused("page_token", stock_request, page_token=pack(document | {"v": 2}))
    refused("page_token", stock_request, page_token=pack(document | {"v": True}))
    refused("page_token", stock_request, page_token=pack(document | {"x": 1}))
    refused("page_token", stock_request, page_token=pack({k: document[k] for k in "vkf"}))


def test_every_single_character_change_is_refused() -> None:
    token = movement_token(MOVEMENTS, 123456)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for at in range(len(token)):
        changed = alphabet[(alphabet.index(token[at]) + 1) % len(alphabet)]
        garbled = token[:at] + changed + token[at + 1 :]
        with pytest.raises(InvalidArgument) as caught:
            movement_request(page_token=garbled)
        assert caught.value.field == "page_token", (at, garbled)
    refused("page_token", movement_request, page_token=token[:-1])
    refused("page_token", movement_request, page_token=token + "A")


@pytest.mark.parametrize(
    "garbled",
    [
        " ",
        "not a token",
        "====",
        "é",
        "A" * (listing.MAX_TOKEN_LENGTH + 1),
        pack([1, 2, 3]),
        pack("text"),
        pack(None),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        base64.urlsafe_b64encode(b"[" * 3000).decode()[: listing.MAX_TOKEN_LENGTH],
        base64.urlsafe_b64encode(b"{" * 1000).decode(),
    ],
)
def test_garbled_tokens_are_refused(garbled: str) -> None:
    refused("page_token", stock_request, page_token=garbled)
    refused("page_token", movement_request, page_token=garbled)


@pytest.mark.parametrize(
    "key",
    [
        [],
        ["prod-1", "", "wh-east"],
        ["prod-1", "", "wh-east", STOCK_KEY[3], "extra"],
        ["prod-1", "", "wh-east", "not-a-uuid"],
        ["prod-1", None, "wh-east", STOCK_KEY[3]],
        ["prod-1", "", 7, STOCK_KEY[3]],
        ["pro\x00d", "", "wh-east", STOCK_KEY[3]],
        ["\ud800", "", "wh-east", STOCK_KEY[3]],
        {"product": "prod-1"},
        "prod-1",
    ],
)
def test_forged_stock_keys_are_refused(key: Any) -> None:
    """A token whose digests are right with a key that is not one: refused before it reaches
    the SQL."""
    forged = forge(LIST_STOCK, FILTER.canonical(), key)
    refused("page_token", stock_request, page_token=forged)


@pytest.mark.parametrize(
    "key", [[], [-1], [2**63], [True], [1.0], ["1"], [None], [1, 2], [10**400]]
)
def test_forged_movement_keys_are_refused(key: Any) -> None:
    forged = forge(LIST_MOVEMENTS, MOVEMENTS.canonical(), key)
    refused("page_token", movement_request, page_token=forged)


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_any_string_is_a_key_or_invalid_argument_naming_page_token(garbage: str) -> None:
    for request in (stock_request, movement_request):
        try:
            request(page_token=garbage)
        except InvalidArgument as error:
            assert error.field == "page_token"


# -- filters --


def test_the_prefix_is_checked_like_a_product_id() -> None:
    assert stock_request(product_id_prefix="prod-").filter.product_id_prefix == "prod-"
    assert stock_request(product_id_prefix="%_\\").filter.product_id_prefix == "%_\\"
    assert stock_request(product_id_prefix="").filter.product_id_prefix is None
    refused("product_id_prefix", stock_request, product_id_prefix="p" * 129)
    refused("product_id_prefix", stock_request, product_id_prefix="p\x00")
    refused("product_id_prefix", stock_request, product_id_prefix="p\n")
    refused("warehouse_id", stock_request, warehouse_id="w" * 129)


def test_movement_filters() -> None:
    assert movement_request(operation="").filter.operation is None
    assert movement_request(variant_id="v").filter.variant_id == "v"
    for name in listing.MOVEMENT_OPERATIONS:
        assert movement_request(operation=name).filter.operation == name
    refused("operation", movement_request, operation="reserve")
    refused("operation", movement_request, operation="DROP TABLE")
    refused("variant_id", movement_request, product_id="", variant_id="v")
    refused("order_id", movement_request, order_id=" ")
    refused("until", movement_request, until=SINCE)
    refused("until", movement_request, until=SINCE - timedelta(microseconds=1))
    refused("since", movement_request, since=datetime(2026, 12, 1))  # no time zone
    paris = timezone(timedelta(hours=1))
    moved = movement_request(since=datetime(2026, 12, 1, 1, tzinfo=paris))
    assert moved.filter.since == SINCE and moved.filter.since.tzinfo is UTC


def test_the_operations_are_those_the_ledger_records() -> None:
    from service.invariants import _REPLAY

    assert set(listing.MOVEMENT_OPERATIONS) == set(_REPLAY)


# -- the SQL's pure helpers --


def test_like_metacharacters_are_escaped() -> None:
    assert like_prefix("prod") == "prod%"
    assert like_prefix("50%_off\\") == "50\\%\\_off\\\\%"


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [
        ("abc", "abd"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),
        ("é", "ê"),
    ],
)
def test_the_prefix_range_ends_at_the_successor(prefix: str, successor: str | None) -> None:
    assert prefix_successor(prefix) == successor


@given(st.text(min_size=1, max_size=5), st.text(max_size=5))
def test_every_string_with_the_prefix_lies_below_its_successor(prefix: str, rest: str) -> None:
    bound = prefix_successor(prefix)
    encoded = (prefix + rest).encode("utf-8", "surrogatepass")
    assert prefix.encode("utf-8", "surrogatepass") <= encoded
    if bound is not None:
        assert encoded < bound.encode("utf-8", "surrogatepass")
