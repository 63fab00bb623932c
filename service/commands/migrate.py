"""`inventory migrate`: apply the Alembic migrations up to head."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply database migrations up to head (INVENTORY_DATABASE_URL)",
        description=__doc__,
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from db.migrate import head_revision, upgrade
    from service.config import Settings

    settings = Settings()
    upgrade(settings.database_url, settings.default_warehouse_id)
    print(f"database migrated to {head_revision()}")
    return 0
