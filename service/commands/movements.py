"""`inventory movements SKU`: a SKU's movement ledger, through the gRPC API (ListMovements,
every page), oldest first.

SKU is product_id[:variant_id], as the Kafka key of stock-changed writes it. Every
change of every stock row of the SKU: reservations, commits, releases, expiries, stock updates
and policy changes. Prints a table, or with --json one JSON object per line. Connects to
--target, else INVENTORY_GRPC_HOST/INVENTORY_GRPC_PORT when set, else the service of
`make run`. Exits 0 when it listed, 2 when it could not.
"""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import Any

COLUMNS_SPEC = (
    ("created_at", "at (UTC)", False),
    ("warehouse_id", "warehouse", False),
    ("operation", "operation", False),
    ("quantity", "quantity", True),
    ("available_after", "available", True),
    ("reserved_after", "reserved", True),
    ("total_after", "total", True),
    ("order_id", "order", False),
    ("actor", "actor", False),
    ("reason", "reason", False),
)


def register(subparsers: Any) -> None:
    from service.commands.api_client import add_common_options, instant

    parser = subparsers.add_parser(
        "movements",
        help="a SKU's stock movements through the gRPC API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sku", metavar="SKU", type=sku, help="product_id[:variant_id]")
    when = "ISO 8601 (no offset: UTC) or an age (15m, 2h, 7d)"
    parser.add_argument(
        "--since", metavar="T", type=instant, help=f"only movements at or after T: {when}"
    )
    parser.add_argument(
        "--until", metavar="T", type=instant, help=f"only movements before T: {when}"
    )
    parser.add_argument("--warehouse", metavar="W", help="only the movements in warehouse W")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def sku(text: str) -> tuple[str, str]:
    """``product_id[:variant_id]`` -> (product_id, variant_id or "")."""
    product_id, _, variant_id = text.partition(":")
    if not product_id.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected product_id[:variant_id]")
    return product_id, variant_id


def run(args: argparse.Namespace) -> int:
    from service.api.generated import inventory_pb2 as pb
    from service.commands.api_client import (
        Column,
        closed_pipe_is_fine,
        emit,
        inventory_api,
        pages,
    )
    from service.commands.target import grpc_target
    from service.failures import EXIT_OK

    target = grpc_target("movements", args.target)
    product_id, variant_id = args.sku
    request = pb.ListMovementsRequest(
        product_id=product_id, variant_id=variant_id, warehouse_id=args.warehouse or ""
    )
    if args.since is not None:
        request.since.FromDatetime(args.since)
    if args.until is not None:
        request.until.FromDatetime(args.until)
    columns = [Column(key, header, numeric) for key, header, numeric in COLUMNS_SPEC]
    title = f"movements of {product_id}" + (f":{variant_id}" if variant_id else "")
    with closed_pipe_is_fine(), inventory_api(target) as api:
        found = pages(api.ListMovements, request, "movements")
        emit((movement_row(m) for m in found), columns, as_json=args.json, title=title)
    return EXIT_OK


def movement_row(movement: Any) -> dict[str, Any]:
    """A ``Movement`` as a JSON-ready dict (int64 as numbers, not proto JSON's strings)."""
    return {
        "id": movement.id,
        "created_at": movement.created_at.ToDatetime(tzinfo=UTC),
        "product_id": movement.product_id,
        "variant_id": movement.variant_id or None,
        "warehouse_id": movement.warehouse_id,
        "operation": movement.operation,
        "quantity": movement.quantity,
        "available_after": movement.available_after,
        "reserved_after": movement.reserved_after,
        "total_after": movement.total_after,
        "order_id": movement.order_id or None,
        "actor": movement.actor or None,
        "reason": movement.reason or None,
        "stock_id": movement.stock_id,
    }
