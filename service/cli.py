"""`inventory ...`: a thin dispatcher; each subcommand lives in ``service/commands/``.

To add a subcommand: write ``service/commands/<name>.py`` with ``register(subparsers)`` and
``run(args) -> int`` (see ``migrate.py``), then import it and call its ``register`` below.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service import failures
from service.commands import (
    audit,
    check,
    dev,
    loadgen,
    migrate,
    movements,
    serve,
    stock,
    stock_files,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inventory",
        description="Inventory service: stock reservations over Kafka and gRPC.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev.register(subparsers)
    migrate.register(subparsers)
    serve.register(subparsers)
    loadgen.register(subparsers)
    check.register(subparsers)
    audit.register(subparsers)
    stock.register(subparsers)
    movements.register(subparsers)
    stock_files.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return failures.run(args.command, args.handler, args)


if __name__ == "__main__":
    raise SystemExit(main())
