"""`inventory check`: verify the ledger's invariants on the live database (reconciliation).

Prints every problem found and exits 1 when there is any, 0 when all holds.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="verify stock and order invariants on the database (INVENTORY_DATABASE_URL)",
        description=__doc__,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.config import Settings

    return asyncio.run(_check(Settings()))


async def _check(settings: Any) -> int:
    from db.session import create_engine
    from service.invariants import check

    db = create_engine(settings)
    try:
        problems = await check(db)
    finally:
        await db.dispose()
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) found" if problems else "all invariants hold")
    return 1 if problems else 0
