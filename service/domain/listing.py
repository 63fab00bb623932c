"""Listings (ListStock, ListMovements): their filters, page sizes and page tokens (AIP-158).

Pure, like the rest of the domain: the checks of a listing request and the format of its page
tokens. The SQL is in ``db/stock_lists.py``, the reads in ``service/ledger_queries.py``
(docs/architecture.md, "Queries and pagination").

A page token is opaque to callers: unpadded urlsafe base64 of a small JSON object
``{"v": 1, "k": <key of the last row returned>, "f": <digest of the method and its filters>,
"d": <digest of f and k>}``. ``d`` catches a garbled or edited token, ``f`` a token used with
other filters (``newest_first`` included) or on the other method; either, and anything that
does not decode, is ``InvalidArgument`` naming ``page_token``. ``page_size`` may change from
page to page. The token holds no secret: a forged one can only name a position in the listing,
which the caller could reach by paging anyway, and its key is checked like any other input
(types, bounds, text PostgreSQL can hold) before it reaches the SQL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain.errors import InvalidArgument
from service.domain.validation import Limits, optional_bool, optional_id, require_int

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A token holds at most three ids of at most 128 characters (4 bytes each in UTF-8), a UUID and
# two digests: about 2,300 characters of base64. Anything longer is not one of ours.
MAX_TOKEN_LENGTH = 4096
TOKEN_VERSION = 1
MAX_MOVEMENT_ID = 2**63 - 1  # stock_movements.id is a bigint

# Every operation the ledger records (the replay in service/invariants.py knows each one).
MOVEMENT_OPERATIONS = (
    "RESERVE",
    "COMMIT",
    "RELEASE",
    "EXPIRE",
    "ADD",
    "SUBTRACT",
    "SET",
    "POLICY",
    "TRANSFER_OUT",
    "TRANSFER_IN",
    "RETURN",
    "RETURN_DAMAGED",
)

LIST_STOCK = "ListStock"
LIST_MOVEMENTS = "ListMovements"

# A stock row's place in ListStock's order: product id, variant id ("" for none), warehouse id,
# stock id. The first three are unique together already; the id makes the order total anyway.
StockKey = tuple[str, str, str, str]
# A movement's place in ListMovements' order: its id.
MovementKey = int


@dataclass(frozen=True, slots=True)
class StockFilter:
    warehouse_id: str | None = None
    product_id_prefix: str | None = None
    below_reorder_point: bool = False  # reorder_point set and sellable <= reorder_point
    out_of_stock: bool = False  # sellable <= 0
    backordered: bool = False  # backordered > 0

    def canonical(self) -> list[Any]:
        return [
            self.warehouse_id,
            self.product_id_prefix,
            self.below_reorder_point,
            self.out_of_stock,
            self.backordered,
        ]


@dataclass(frozen=True, slots=True)
class MovementFilter:
    product_id: str | None = None
    variant_id: str | None = None  # narrows product_id to one SKU; None: every variant
    warehouse_id: str | None = None
    order_id: str | None = None
    operation: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    newest_first: bool = False

    def canonical(self) -> list[Any]:
        return [
            self.product_id,
            self.variant_id,
            self.warehouse_id,
            self.order_id,
            self.operation,
            self.since.isoformat() if self.since is not None else None,
            self.until.isoformat() if self.until is not None else None,
            self.newest_first,
        ]


@dataclass(frozen=True, slots=True)
class StockListing:
    filter: StockFilter
    page_size: int
    after: StockKey | None = None  # None: the first page


@dataclass(frozen=True, slots=True)
class MovementListing:
    filter: MovementFilter
    page_size: int
    after: MovementKey | None = None  # None: the first page


# -- requests --


def _page_size(value: Any) -> int:
    """0 (the proto default) is ``DEFAULT_PAGE_SIZE``; negative or above ``MAX_PAGE_SIZE`` is
    refused, never clamped."""
    size = require_int(value, "page_size", low=0, high=MAX_PAGE_SIZE)
    return size or DEFAULT_PAGE_SIZE


def _prefix(value: Any, limits: Limits) -> str | None:
    """A prefix of product ids, checked as they are (a string, at most ``max_id_length``
    characters, printable); "" means no filter. It is matched as text, never as a pattern."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument("product_id_prefix", "must be a string")
    if len(value) > limits.max_id_length:
        raise InvalidArgument("product_id_prefix", f"longer than {limits.max_id_length} characters")
    if not value.isprintable():
        raise InvalidArgument("product_id_prefix", "contains control characters")
    return value


def _operation(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in MOVEMENT_OPERATIONS:  # a str (or not) that is not an operation's name
        raise InvalidArgument("operation", f"must be one of {', '.join(MOVEMENT_OPERATIONS)}")
    return str(value)


def _instant(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidArgument(field, "must be a point in time with a time zone")
    return value.astimezone(UTC)


def stock_listing(
    *,
    page_size: Any,
    page_token: Any,
    warehouse_id: Any,
    product_id_prefix: Any,
    below_reorder_point: Any,
    out_of_stock: Any,
    backordered: Any,
    limits: Limits,
) -> StockListing:
    """A ListStock request checked: every field as named in the request; the token last, against
    the filters it must have been issued for."""
    size = _page_size(page_size)
    found = StockFilter(
        warehouse_id=optional_id(warehouse_id, "warehouse_id", limits),
        product_id_prefix=_prefix(product_id_prefix, limits),
        below_reorder_point=optional_bool(below_reorder_point, "below_reorder_point"),
        out_of_stock=optional_bool(out_of_stock, "out_of_stock"),
        backordered=optional_bool(backordered, "backordered"),
    )
    after = None
    if page_token is not None and page_token != "":
        after = stock_key(decode_token(page_token, LIST_STOCK, found.canonical()))
    return StockListing(found, size, after)


def movement_listing(
    *,
    page_size: Any,
    page_token: Any,
    product_id: Any,
    variant_id: Any,
    warehouse_id: Any,
    order_id: Any,
    operation: Any,
    since: Any,
    until: Any,
    newest_first: Any,
    limits: Limits,
) -> MovementListing:
    """A ListMovements request checked. ``variant_id`` narrows ``product_id`` (alone it is
    refused); ``[since, until)`` may be open at either end, but not empty."""
    size = _page_size(page_size)
    product = optional_id(product_id, "product_id", limits)
    variant = optional_id(variant_id, "variant_id", limits)
    if variant is not None and product is None:
        raise InvalidArgument("variant_id", "needs product_id")
    start, end = _instant(since, "since"), _instant(until, "until")
    if start is not None and end is not None and end <= start:
        raise InvalidArgument("until", "must be after since")
    found = MovementFilter(
        product_id=product,
        variant_id=variant,
        warehouse_id=optional_id(warehouse_id, "warehouse_id", limits),
        order_id=optional_id(order_id, "order_id", limits),
        operation=_operation(operation),
        since=start,
        until=end,
        newest_first=optional_bool(newest_first, "newest_first"),
    )
    after = None
    if page_token is not None and page_token != "":
        after = movement_key(decode_token(page_token, LIST_MOVEMENTS, found.canonical()))
    return MovementListing(found, size, after)


# -- page tokens --


def stock_token(found: StockFilter, key: StockKey) -> str:
    return encode_token(LIST_STOCK, found.canonical(), list(key))


def movement_token(found: MovementFilter, key: MovementKey) -> str:
    return encode_token(LIST_MOVEMENTS, found.canonical(), [key])


def encode_token(method: str, filters: list[Any], key: list[Any]) -> str:
    scope = _digest([method, filters])
    payload = {"v": TOKEN_VERSION, "k": key, "f": scope, "d": _digest([scope, key])}
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: Any, method: str, filters: list[Any]) -> Any:
    """The key a token of ``method`` carries, if it was issued for ``filters``; the key is not
    checked yet (``stock_key``, ``movement_key``)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise _not_a_token()
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        # only the encoding we issue: base64 ignores a last character's spare bits, we do not
        if base64.urlsafe_b64encode(raw).rstrip(b"=") != token.encode("ascii"):
            raise _not_a_token()
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _not_a_token() from None
    if not isinstance(payload, dict) or set(payload) != {"v", "k", "f", "d"}:
        raise _not_a_token()
    version, key, scope, check = payload["v"], payload["k"], payload["f"], payload["d"]
    if type(version) is not int or version != TOKEN_VERSION:
        raise _not_a_token()
    if not isinstance(scope, str) or not isinstance(check, str) or not check.isascii():
        raise _not_a_token()
    if not hmac.compare_digest(check, _digest([scope, key])):
        raise _not_a_token()
    if scope != _digest([method, filters]):
        raise InvalidArgument(
            "page_token",
            f"was issued for other filters or another method; a {method} token must be used "
            "with the filters of the request that returned it",
        )
    return key


def stock_key(raw: Any) -> StockKey:
    if not isinstance(raw, list) or len(raw) != 4 or not all(isinstance(v, str) for v in raw):
        raise _not_a_token()
    product_id, variant_id, warehouse_id, stock_id = (_text(v) for v in raw)
    try:
        stock_id = str(uuid.UUID(stock_id))
    except ValueError:
        raise _not_a_token() from None
    return product_id, variant_id, warehouse_id, stock_id


def movement_key(raw: Any) -> MovementKey:
    if not isinstance(raw, list) or len(raw) != 1:
        raise _not_a_token()
    [movement_id] = raw
    if type(movement_id) is not int or not 0 <= movement_id <= MAX_MOVEMENT_ID:
        raise _not_a_token()
    return movement_id


def _text(value: str) -> str:
    """Text PostgreSQL can hold: no NUL, no lone surrogate (JSON can carry both)."""
    if "\x00" in value or len(value) > MAX_TOKEN_LENGTH:
        raise _not_a_token()
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _not_a_token() from None
    return value


def _digest(value: Any) -> str:
    canonical = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _not_a_token() -> InvalidArgument:
    return InvalidArgument("page_token", "not a page token of this listing (garbled or edited)")
