"""The monthly partitions of ``stock_movements`` (revision 0005): created ahead, dropped by age.

A partition holds one calendar month in UTC, ``[first day 00:00, next first day 00:00)``, and
is named ``stock_movements_pYYYYMM``. Every process that writes creates the months ahead at
start-up and the pruner on each round. ``stock_movements_default``, the DEFAULT partition, is
the safety net: a movement outside every month (the months ahead not created for two months,
a backdated import) lands there rather than failing its batch. It costs a scan of the DEFAULT
partition whenever a month is created (PostgreSQL checks that none of its rows belongs to the
new month), nothing while it is empty, which it is when the months are created ahead; if it
holds rows of a month, creating that month fails (logged each round) and its movements keep
going to the DEFAULT partition, still read and pruned like any other.

A partition is created with the storage parameters of every table the pruner deletes from
(``CHURNED_STORAGE``, revision 0007).

Creating and dropping a partition take an ACCESS EXCLUSIVE lock on the parent for an instant;
the caller's short ``lock_timeout`` makes either give up (and retry next round) rather than
queue the engine behind it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import asyncpg

PARENT = "stock_movements"
DEFAULT = f"{PARENT}_default"
_NAME = re.compile(rf"{PARENT}_p(\d{{4}})(\d{{2}})")

_EXISTING = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    f"WHERE i.inhparent = '{PARENT}'::regclass"
)


# VACUUM leaves a churned table's size alone (giving its end back takes an ACCESS EXCLUSIVE
# lock, and the space is written again within seconds) and runs once 5 % of the rows are dead.
VACUUM_SCALE_FACTOR = 0.05
CHURNED_STORAGE = "vacuum_truncate = false, " + (
    f"autovacuum_vacuum_scale_factor = {VACUUM_SCALE_FACTOR}"
)


def is_partition(name: str | None) -> bool:
    """A table name that is one of the partitions (Alembic compares the parent only)."""
    return name is not None and (name == DEFAULT or _NAME.fullmatch(name) is not None)


def month_start(instant: datetime) -> datetime:
    instant = instant.astimezone(UTC)
    return datetime(instant.year, instant.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_p{month:%Y%m}"


def month_of(name: str) -> datetime | None:
    found = _NAME.fullmatch(name)
    if found is None:
        return None
    return datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)


async def existing_months(conn: asyncpg.Connection) -> list[datetime]:
    months = [month_of(row[0]) for row in await conn.fetch(_EXISTING)]
    return sorted(m for m in months if m is not None)


async def ensure_ahead(conn: asyncpg.Connection, now: datetime, months_ahead: int) -> list[str]:
    """Create the partitions of this month and ``months_ahead`` after it that do not exist;
    returns the names created."""
    have = set(await existing_months(conn))
    month = month_start(now)
    created = []
    for _ in range(months_ahead + 1):
        if month not in have:
            name = partition_name(month)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} FOR VALUES "
                f"FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}') "
                f"WITH ({CHURNED_STORAGE})"
            )
            created.append(name)
        month = next_month(month)
    return created


# A stock's last movement of a month, when it has none later, moves to the first instant of
# the next month before the month goes: GetStock as_of after the horizon and the invariant
# check's replay start from it (the figures after it are the row's until its next change).
_CARRY_FORWARD = (
    "INSERT INTO {parent} ({columns}) SELECT {carried} FROM ("
    "SELECT DISTINCT ON (stock_id) * FROM {name} ORDER BY stock_id, id DESC) AS last "
    "WHERE NOT EXISTS (SELECT FROM {parent} n WHERE n.stock_id = last.stock_id "
    "AND n.created_at >= $1)"
)
_COLUMNS = (
    "id, stock_id, product_id, variant_id, warehouse_id, operation, quantity, available_after, "
    "reserved_after, total_after, reason, order_id, actor"
)


async def drop_older_than(conn: asyncpg.Connection, horizon: datetime) -> list[str]:
    """Drop the partitions whose whole month lies before ``horizon`` (each with its rows to
    carry forward, in one transaction); returns their names."""
    dropped = []
    while months := await existing_months(conn):
        month = months[0]
        following = next_month(month)
        if following > horizon:
            break
        name = partition_name(month)
        await ensure_ahead(conn, following, 0)  # the month the carried rows go to
        async with conn.transaction():
            await conn.execute(
                _CARRY_FORWARD.format(
                    parent=PARENT,
                    name=name,
                    columns=f"{_COLUMNS}, created_at",
                    carried=f"{_COLUMNS}, $1::timestamptz",
                ),
                following,
            )
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        dropped.append(name)
    return dropped
