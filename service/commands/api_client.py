"""What the commands that read through the gRPC API share (`inventory stock ls`, `inventory
movements`): the channel, every page of a List RPC, the failures as one line, and the output,
a table (``rich``) or, with ``--json``, one JSON object per line.

The commands' parsers import this module, so ``grpc`` and ``rich`` are imported only when a
command runs (they stay out of `inventory --help` and `inventory serve`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from service.failures import CannotRun

if TYPE_CHECKING:
    import grpc

    from service.api.generated import inventory_pb2_grpc as pb_grpc

CALL_TIMEOUT_S = 30.0
PAGE_SIZE = 1000  # the most one page holds (the List RPCs cap page_size there)

Row = dict[str, Any]


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line instead of a table (for scripts)",
    )
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="the gRPC API (default: INVENTORY_GRPC_HOST/INVENTORY_GRPC_PORT if set, else the "
        "`make run` service)",
    )


@contextlib.contextmanager
def inventory_api(target: str) -> Iterator[pb_grpc.InventoryServiceStub]:
    """A stub on a plaintext channel to ``target``; an RPC failure becomes ``CannotRun``."""
    import grpc

    from service.api.generated import inventory_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            yield pb_grpc.InventoryServiceStub(channel)  # type: ignore[no-untyped-call]
        except grpc.RpcError as error:
            raise CannotRun(rpc_failure(error, target)) from error


def rpc_failure(error: grpc.RpcError, target: str) -> str:
    import grpc

    code = error.code() if isinstance(error, grpc.Call) else None
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
    if code is grpc.StatusCode.UNAVAILABLE:
        return (
            f"the gRPC API at {target} is unavailable ({details}): is the service running? "
            "(INVENTORY_GRPC_PORT or --target; `make run` starts one)"
        )
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return f"the service at {target} does not implement this RPC ({details}): an older one?"
    name = code.name if code is not None else "error"
    return f"the gRPC API at {target} answered {name}: {details}"


def pages(call: Callable[..., Any], request: Any, field: str) -> Iterator[Any]:
    """Every item of every page of a List RPC (AIP-158), the pages fetched as they are read."""
    request.page_size = PAGE_SIZE
    seen: set[str] = set()
    while True:
        answer = call(request, timeout=CALL_TIMEOUT_S)
        yield from getattr(answer, field)
        token = answer.next_page_token
        if not token:
            return
        if token in seen:  # a server bug would otherwise page forever
            raise CannotRun(f"the server repeated the page token {token!r}")
        seen.add(token)
        request.page_token = token


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False


def emit(rows: Iterable[Row], columns: Sequence[Column], *, as_json: bool, title: str) -> None:
    """JSON lines (written as the pages arrive), or one table of every row."""
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, default=_json_value))
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=column.numeric,
        )
    count = 0
    for row in rows:
        # Text, not str: a "[...]" in an id or a reason is data, not rich markup
        table.add_row(*(Text(_cell(row.get(column.key))) for column in columns))
        count += 1
    table.caption = f"{count} row{'' if count == 1 else 's'}"
    Console(highlight=False).print(table)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # in UTC, as the column's header says
        return (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
        )
    return str(value)


@contextlib.contextmanager
def closed_pipe_is_fine() -> Iterator[None]:
    """`inventory movements SKU --json | head`: a reader that stopped is not an error."""
    try:
        yield
    except BrokenPipeError:
        # Python would complain again flushing stdout at exit (docs: "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def instant(text: str) -> datetime:
    """An argparse type: ISO 8601 (a time without an offset is UTC) or an age (``90s``,
    ``15m``, ``2h``, ``7d``, ``1w``: that long ago)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an ISO 8601 time (2026-01-02T03:04:05Z) or an age (15m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
