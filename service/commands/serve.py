"""`inventory serve`: migrate, then run the gRPC API, the stream worker or both until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

ROLES = ("all", "api", "worker")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the service: gRPC API + HTTP (api), the stream worker (worker), or both (all)",
        description=__doc__,
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help="what this process runs (default: INVENTORY_ROLE, else all); "
        "with 'api' nothing touches Kafka",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service import serve
    from service.config import Settings

    settings = Settings() if args.role is None else Settings(role=args.role)
    asyncio.run(serve.run(settings))
    return 0
