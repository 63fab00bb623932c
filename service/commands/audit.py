"""`inventory audit`: reconcile the order topics with the ledger.

Reads the four order topics over a window (default: everything retained, up to each
partition's end at the start) and the whole DLQ, and reports every event that has neither a
processed_events row nor a dead letter: "lost" when the consumer group (INVENTORY_APP_ID)
committed past it, "pending" when it is not consumed yet. Then every order whose created
event is in the window is checked against the states its events allow. Exits 0 when clean,
1 when anything is reported, 2 when it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="reconcile the order topics with the ledger: lost and pending events, orders",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--since", metavar="ISO8601", help="skip records older than this time (UTC if no zone)"
    )
    window.add_argument(
        "--since-minutes", metavar="N", help="skip records older than N minutes ago"
    )
    parser.add_argument(
        "--from",
        dest="start",
        action="append",
        default=[],
        metavar="TOPIC:PARTITION=OFFSET",
        help="start that partition of an order topic at OFFSET (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(handler=run)


class BadArguments(ValueError):
    pass


def parse_since(args: argparse.Namespace, now: datetime | None = None) -> datetime | None:
    if args.since is not None:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError:
            raise BadArguments(f"--since {args.since!r} is not an ISO 8601 time") from None
        return since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    if args.since_minutes is not None:
        try:
            minutes = float(args.since_minutes)
        except ValueError:
            raise BadArguments(f"--since-minutes {args.since_minutes!r} is not a number") from None
        if minutes < 0:
            raise BadArguments("--since-minutes must not be negative")
        return (now or datetime.now(UTC)) - timedelta(minutes=minutes)
    return None


def parse_starts(values: list[str]) -> dict[tuple[str, int], int]:
    starts: dict[tuple[str, int], int] = {}
    for value in values:
        where, _, offset = value.rpartition("=")
        topic, _, partition = where.rpartition(":")
        try:
            key, first = (topic, int(partition)), int(offset)
        except ValueError:
            raise BadArguments(f"--from {value!r} is not TOPIC:PARTITION=OFFSET") from None
        if not topic or key[1] < 0 or first < 0:
            raise BadArguments(f"--from {value!r} is not TOPIC:PARTITION=OFFSET")
        starts[key] = first
    return starts


def run(args: argparse.Namespace) -> int:
    from service.commands.target import command_settings

    # the command prints its own one-line reason; aiokafka would log every failed connection
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        since = parse_since(args)
        starts = parse_starts(args.start)
        settings = command_settings("audit", needs=("database_url", "kafka_bootstrap"))
        return asyncio.run(_audit(settings, since, starts, as_json=args.json))
    except BadArguments as exc:
        print(f"inventory audit: {exc}", file=sys.stderr)
        return 2


async def _audit(
    settings: Any, since: datetime | None, starts: dict[tuple[str, int], int], *, as_json: bool
) -> int:
    from streams.audit import CannotAudit, audit

    try:
        report = await audit(settings, since=since, start_offsets=starts)
    except CannotAudit as exc:
        print(f"inventory audit: could not run: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            print(line)
    return 0 if report.clean else 1
