"""`inventory check`: verify the ledger's invariants on the live database (reconciliation).

Prints every problem found. Without INVENTORY_DATABASE_URL it checks the database of
`make run`. Exits 0 when all holds, 1 when it found problems, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify stock and order invariants on the database (INVENTORY_DATABASE_URL, "
        "else the `make run` stack)",
        description=__doc__,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.commands.target import command_settings
    from service.failures import explained

    settings = command_settings("check")
    with explained(settings):
        return asyncio.run(_check(settings))


async def _check(settings: Any) -> int:
    from db.session import create_engine
    from service.failures import EXIT_OK, EXIT_PROBLEMS
    from service.invariants import check

    db = create_engine(settings.database())
    try:
        # with a movement retention, each stock's replay starts at its oldest retained movement
        problems = await check(db, whole_history=settings.movement_retention is None)
    finally:
        await db.dispose()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found" if problems else "all invariants hold")
    return EXIT_PROBLEMS if problems else EXIT_OK
