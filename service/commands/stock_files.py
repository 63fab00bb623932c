"""`inventory import FILE.csv` and `inventory export`: stock counts in and out as CSV, through
the gRPC API with the admin token (``INVENTORY_ADMIN_TOKEN``), so they work against a remote
service as well as the `make run` one.

import: the lines go in BulkUpdateStock calls of up to 1,000, a few in flight; a progress bar
on stderr, then one summary line: applied, unchanged (duplicates: their idempotency key was
seen before), refused. Refused lines go to FILE.refused.csv (or --refused PATH) with their
reason. Running the same file again changes nothing. Exits 0 when every line applied or was a
duplicate, 1 when any line was refused, 2 when it could not run (unreadable file, bad header,
no token, the service unreachable or refusing the token: the lines sent so far are applied,
and running the file again finishes it).

export: every stock row (of --warehouse W) as a SET of its on-hand total, the columns import
reads; importing an export changes no level. Column format: docs/operations.md ("Loading
counts").
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.commands.stock_csv import Line

CHUNK_LINES = 1000  # BulkUpdateStock's limit
IN_FLIGHT = 4
CALL_TIMEOUT_S = 300.0
TOKEN_VARIABLE = "INVENTORY_ADMIN_TOKEN"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="load stock counts from a CSV file through the gRPC API (BulkUpdateStock)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", metavar="FILE.csv", type=Path)
    parser.add_argument(
        "--refused", metavar="PATH", type=Path, help="where refused lines go (FILE.refused.csv)"
    )
    parser.add_argument(
        "--in-flight", type=int, default=IN_FLIGHT, help=f"calls at once (default {IN_FLIGHT})"
    )
    _target_option(parser)
    parser.set_defaults(handler=run_import)
    export = subparsers.add_parser(
        "export",
        help="write the stock rows as a CSV that `inventory import` reads (SET of each total)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--warehouse", metavar="W", help="only the rows of warehouse W")
    _target_option(export)
    export.set_defaults(handler=run_export)


def _target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="the gRPC API (default: INVENTORY_GRPC_HOST/INVENTORY_GRPC_PORT if set, else the "
        "`make run` service)",
    )


class Tally:
    def __init__(self) -> None:
        self.applied = 0
        self.duplicates = 0
        self.refused: list[tuple[Line, str]] = []

    def summary(self, refused_path: Path) -> str:
        line = (
            f"{self.applied} applied, {self.duplicates} unchanged (duplicates), "
            f"{len(self.refused)} refused"
        )
        return line + (f": see {refused_path}" if self.refused else "")


def run_import(args: argparse.Namespace) -> int:
    from service.commands.stock_csv import BadFile, read_lines
    from service.commands.target import grpc_target
    from service.failures import EXIT_OK, EXIT_PROBLEMS, CannotRun

    path: Path = args.file
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CannotRun(f"cannot read {path}: {error.strerror}") from None
    try:
        header, lines = read_lines(data)
        every_line = list(lines)
    except (BadFile, csv.Error) as error:
        raise CannotRun(f"{path}: {error}") from None
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise CannotRun(f"{TOKEN_VARIABLE} is not set: import sends the admin token")
    refused_path = args.refused or path.with_name(f"{path.stem}.refused.csv")
    tally = Tally()
    send(grpc_target("import", args.target), token, every_line, tally, max(1, args.in_flight))
    if tally.refused:
        write_refused(refused_path, header, tally.refused)
    print(tally.summary(refused_path), flush=True)
    return EXIT_PROBLEMS if tally.refused else EXIT_OK


def send(target: str, token: str, lines: list[Line], tally: Tally, in_flight: int) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from service.commands.api_client import inventory_api

    metadata = (("authorization", f"Bearer {token}"),)
    sendable = [line for line in lines if line.problem is None]
    for line in lines:
        if line.problem is not None:
            tally.refused.append((line, line.problem))
    chunks = [sendable[i : i + CHUNK_LINES] for i in range(0, len(sendable), CHUNK_LINES)]
    with (
        inventory_api(target) as api,
        Progress(console=Console(stderr=True), transient=True) as progress,
    ):
        bar = progress.add_task("import", total=len(lines), completed=len(lines) - len(sendable))
        window: deque[tuple[list[Line], Any]] = deque()
        for chunk in chunks:
            if len(window) >= in_flight:
                progress.advance(bar, settle(*window.popleft(), tally))
            call = api.BulkUpdateStock.future(
                bulk_request(chunk), metadata=metadata, timeout=CALL_TIMEOUT_S
            )
            window.append((chunk, call))
        while window:
            progress.advance(bar, settle(*window.popleft(), tally))


def bulk_request(chunk: list[Line]) -> Any:
    from service.api.generated import inventory_pb2 as pb

    return pb.BulkUpdateStockRequest(lines=[update_request(line) for line in chunk])


def update_request(line: Line) -> Any:
    from service.api.generated import inventory_pb2 as pb

    fields = line.fields
    operation = fields["operation"].strip().upper()
    return pb.UpdateStockRequest(
        product_id=fields["product_id"].strip(),
        variant_id=fields.get("variant_id", "").strip(),
        warehouse_id=fields["warehouse_id"].strip(),
        # an unknown name goes as UNSPECIFIED: the service refuses it, naming the field
        operation=operation if operation in _OPERATIONS else "STOCK_OPERATION_UNSPECIFIED",
        quantity=int(fields["quantity"].strip()),
        reason=fields.get("reason", ""),
        idempotency_key=line.key,
    )


_OPERATIONS = ("ADD", "SUBTRACT", "SET")


def settle(chunk: list[Line], call: Any, tally: Tally) -> int:
    """Count a call's answers (its failure as a whole is the command's: ``inventory_api``)."""
    answer = call.result()
    for line, result in zip(chunk, answer.results, strict=True):
        if result.code != "OK":
            tally.refused.append((line, f"{result.code}: {result.message}"))
        elif result.duplicate:
            tally.duplicates += 1
        else:
            tally.applied += 1
    return len(chunk)


def write_refused(path: Path, header: list[str], refused: list[tuple[Line, str]]) -> None:
    from service.commands.stock_csv import REFUSED_COLUMNS

    columns = [name for name in header if name not in REFUSED_COLUMNS]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*columns, *REFUSED_COLUMNS])
        for line, reason in sorted(refused, key=lambda pair: pair[0].number):
            writer.writerow([*(line.fields.get(c, "") for c in columns), line.number, reason])


def run_export(args: argparse.Namespace) -> int:
    from service.api.generated import inventory_pb2 as pb
    from service.commands.api_client import closed_pipe_is_fine, inventory_api, pages
    from service.commands.stock_csv import export_header, export_row
    from service.commands.target import grpc_target
    from service.failures import EXIT_OK

    target = grpc_target("export", args.target)
    request = pb.ListStockRequest(warehouse_id=args.warehouse or "")
    with closed_pipe_is_fine(), inventory_api(target) as api:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(export_header())
        for level in pages(api.ListStock, request, "stock"):
            writer.writerow(export_row(level))
        sys.stdout.flush()
    return EXIT_OK
