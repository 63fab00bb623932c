"""`inventory migrate`: apply the Alembic migrations up to head.

Without INVENTORY_DATABASE_URL it migrates the database of `make run`. Exits 0 when the
database is at head, 2 when it could not run.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply database migrations up to head (INVENTORY_DATABASE_URL, else the "
        "`make run` stack)",
        description=__doc__,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from db.migrate import head_revision, upgrade
    from service.commands.target import command_settings
    from service.failures import EXIT_OK, explained

    settings = command_settings("migrate")
    with explained(settings):
        upgrade(settings.database_url, settings.default_warehouse_id)
    print(f"database migrated to {head_revision()}")
    return EXIT_OK
