"""The stock CSV of `inventory import` and `inventory export` (docs/operations.md, "Loading
counts"): one UpdateStock per line.

Columns (header required, any order): ``product_id``, ``variant_id`` (empty: none),
``warehouse_id`` (empty: the default warehouse), ``operation`` (ADD, SUBTRACT or SET),
``quantity`` (an integer), ``reason`` (optional). ``line`` and ``refused_reason``, which the
file of refused lines adds, are ignored, so a corrected refused file imports as it is.

A line's idempotency key is ``sha256(file bytes)[:16]:<line>``, ``<line>`` being the line's
number in the file (the header is line 1; a quoted field over several lines counts as the line
it starts on): importing the same bytes again changes nothing, whatever was applied before.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

COLUMNS = ("product_id", "variant_id", "warehouse_id", "operation", "quantity", "reason")
REQUIRED = ("product_id", "warehouse_id", "operation", "quantity")
REFUSED_COLUMNS = ("line", "refused_reason")
EXPORT_REASON = "export"


class BadFile(ValueError):
    """The file cannot be imported at all (no header, a missing column, not UTF-8)."""


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    fields: dict[str, str]
    key: str  # the idempotency key
    problem: str | None = None  # refused before sending (what the API could not even carry)


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def read_lines(data: bytes) -> tuple[list[str], Iterator[Line]]:
    """The header, and each data line (with its key, or the problem that refuses it)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadFile(f"not UTF-8: {error.reason} at byte {error.start}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise BadFile("empty file: a header line is required")
    header = [name.strip() for name in header]
    unknown = [n for n in header if n not in COLUMNS and n not in REFUSED_COLUMNS]
    missing = [n for n in REQUIRED if n not in header]
    if missing or unknown:
        raise BadFile(
            f"header {','.join(header)!r}: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            + f" (columns: {','.join(COLUMNS)})"
        )
    return header, _lines(reader, header, file_digest(data))


def _lines(reader: Any, header: list[str], digest: str) -> Iterator[Line]:
    number = reader.line_num + 1
    for record in reader:
        if record:  # a blank line is no line
            fields = dict(zip(header, record, strict=False))
            yield Line(number, fields, f"{digest}:{number}", _problem(record, header, fields))
        number = reader.line_num + 1


def _problem(record: list[str], header: list[str], fields: dict[str, str]) -> str | None:
    if len(record) != len(header):
        return f"{len(record)} fields, the header has {len(header)}"
    quantity = fields["quantity"].strip()
    try:
        value = int(quantity)
    except ValueError:
        return f"quantity: not an integer: {quantity!r}"
    if not -(2**63) <= value < 2**63:
        return f"quantity: out of range: {quantity}"
    return None


def export_header() -> list[str]:
    return list(COLUMNS)


def export_row(level: Any) -> list[str]:
    """A ``StockLevel`` as a line that SETs its on-hand count: importing it changes nothing."""
    return [
        level.product_id,
        level.variant_id,
        level.warehouse_id,
        "SET",
        str(level.total),
        EXPORT_REASON,
    ]
