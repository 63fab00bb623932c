"""`inventory stock ls`: the stock rows, through the gRPC API (ListStock, every page).

Ordered by product, variant, warehouse. Prints a table, or with --json one JSON object per
line. Connects to --target, else INVENTORY_GRPC_HOST/INVENTORY_GRPC_PORT when set, else
the service of `make run`. Exits 0 when it listed, 2 when it could not.
"""

from __future__ import annotations

import argparse
from typing import Any

COLUMNS_SPEC = (
    ("product_id", "product", False),
    ("variant_id", "variant", False),
    ("warehouse_id", "warehouse", False),
    ("available", "available", True),
    ("reserved", "reserved", True),
    ("total", "total", True),
    ("sellable", "sellable", True),
    ("backordered", "backordered", True),
    ("safety_stock", "safety", True),
    ("reorder_point", "reorder at", True),
)


def register(subparsers: Any) -> None:
    from service.commands.api_client import add_common_options

    parser = subparsers.add_parser(
        "stock",
        help="stock rows through the gRPC API (`inventory stock ls`)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser(
        "ls",
        help="list the stock rows (every page of ListStock)",
        description="List the stock rows, ordered by product, variant, warehouse.",
    )
    ls.add_argument("--warehouse", metavar="W", help="only the rows of warehouse W")
    ls.add_argument("--prefix", metavar="P", help="only products whose id starts with P")
    ls.add_argument(
        "--below-reorder-point",
        action="store_true",
        help="only rows whose sellable stock is at or below their reorder point",
    )
    ls.add_argument("--out-of-stock", action="store_true", help="only rows with nothing sellable")
    ls.add_argument("--backordered", action="store_true", help="only rows with backorders")
    add_common_options(ls)
    ls.set_defaults(handler=run_ls)


def run_ls(args: argparse.Namespace) -> int:
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

    target = grpc_target("stock", args.target)
    request = pb.ListStockRequest(
        warehouse_id=args.warehouse or "",
        product_id_prefix=args.prefix or "",
        below_reorder_point=args.below_reorder_point,
        out_of_stock=args.out_of_stock,
        backordered=args.backordered,
    )
    columns = [Column(key, header, numeric) for key, header, numeric in COLUMNS_SPEC]
    with closed_pipe_is_fine(), inventory_api(target) as api:
        levels = pages(api.ListStock, request, "stock")
        emit((stock_row(level) for level in levels), columns, as_json=args.json, title="stock")
    return EXIT_OK


def stock_row(level: Any) -> dict[str, Any]:
    """A ``StockLevel`` as a JSON-ready dict (int64 as numbers, not proto JSON's strings)."""
    return {
        "product_id": level.product_id,
        "variant_id": level.variant_id or None,
        "warehouse_id": level.warehouse_id,
        "available": level.available,
        "reserved": level.reserved,
        "total": level.total,
        "sellable": level.sellable,
        "backordered": level.backordered,
        "safety_stock": level.safety_stock,
        "reorder_point": level.reorder_point if level.HasField("reorder_point") else None,
        "backorder_limit": level.backorder_limit,
        "version": level.version,
        "stock_id": level.stock_id,
    }
