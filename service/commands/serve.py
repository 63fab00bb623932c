"""`inventory serve`: migrate, then run the gRPC API, the stream worker or both until SIGTERM.

``--role api --processes N`` (N > 1): N API processes share the gRPC port under one
supervisor that serves HTTP for them (``service/supervisor.py``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

ROLES = ("all", "api", "worker")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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
    parser.add_argument(
        "--processes",
        type=positive,
        default=None,
        metavar="N",
        help="role api only: N processes share the gRPC port (SO_REUSEPORT) under a supervisor "
        "that serves HTTP for them (default: INVENTORY_API_PROCESSES, else 1)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.config import Settings

    overrides: dict[str, Any] = {}
    if args.role is not None:
        overrides["role"] = args.role
    if args.processes is not None:
        overrides["api_processes"] = args.processes
    settings = Settings(**overrides)
    if settings.api_processes > 1:
        from service import supervisor  # imports neither gRPC nor prometheus_client yet

        problem = supervisor.refusal(settings)
        if problem is not None:
            print(f"inventory serve: {problem}", file=sys.stderr)
            return 2
        return supervisor.run(settings)

    from service import event_loop, lifecycle
    from service.failures import EXIT_OK, explained

    with explained(settings):
        event_loop.run(lifecycle.run(settings), settings.event_loop)
    return EXIT_OK
