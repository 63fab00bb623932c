"""`inventory loadgen`: publish synthetic order events (for demos and benchmarks).

Without INVENTORY_KAFKA_BOOTSTRAP / INVENTORY_DATABASE_URL in the environment it targets the
stack of `make run`. By default it first SETs the stock of its SKUs (LOAD-SKU-00000...) so
that orders can be reserved; --seed-stock 0 skips that. It reaches the broker and the
database before it changes anything; exit 2 when it cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return share


def _mix(value: str) -> tuple[float, float, float]:
    """``created,paid,cancelled`` weights, e.g. ``70,20,10``."""
    try:
        weights = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three numbers: created,paid,cancelled") from None
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise argparse.ArgumentTypeError("expected three weights >= 0: created,paid,cancelled")
    return weights[0], weights[1], weights[2]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "loadgen",
        help="publish synthetic order events (rate, SKUs, hot share, mix, malformed share)",
        description=__doc__,
    )
    parser.add_argument("--count", type=int, default=10_000, help="events to publish")
    parser.add_argument(
        "--rate", type=float, default=1_000.0, help="events per second (0: as fast as possible)"
    )
    parser.add_argument("--skus", type=int, default=100, help="distinct SKUs")
    parser.add_argument("--hot-skus", type=int, default=10, help="how many of them are hot")
    parser.add_argument(
        "--hot-share", type=_share, default=0.5, help="share of item lines on the hot SKUs"
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=(70.0, 20.0, 10.0),
        help="weights of created,paid,cancelled events (default 70,20,10)",
    )
    parser.add_argument(
        "--malformed", type=_share, default=0.0, help="share of malformed events (go to the DLQ)"
    )
    parser.add_argument("--max-items", type=int, default=3, help="item lines per order, at most")
    parser.add_argument("--ttl", type=int, default=None, help="ttl_seconds of the orders")
    parser.add_argument("--prefix", default="LOAD", help="prefix of SKU and order ids")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (repeatable runs)")
    parser.add_argument(
        "--seed-stock",
        type=int,
        default=100_000,
        metavar="QTY",
        help="SET each SKU to QTY in the default warehouse first (0: do not touch stock)",
    )
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers")
    parser.set_defaults(handler=run)


def settings_for(args: argparse.Namespace) -> Any:
    from service.commands.target import command_settings

    needs = ("kafka_bootstrap", "database_url") if args.seed_stock > 0 else ("kafka_bootstrap",)
    given = {"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}
    return command_settings("loadgen", needs, **given)


def run(args: argparse.Namespace) -> int:
    from service.devtools import load_generator
    from service.failures import EXIT_OK, explained

    created, paid, cancelled = args.mix
    config = load_generator.LoadConfig(
        count=args.count,
        rate=args.rate,
        skus=args.skus,
        hot_skus=min(args.hot_skus, args.skus),
        hot_share=args.hot_share,
        created=created,
        paid=paid,
        cancelled=cancelled,
        malformed=args.malformed,
        max_items=args.max_items,
        ttl_seconds=args.ttl,
        prefix=args.prefix,
        seed=args.seed,
    )
    settings = settings_for(args)
    # aiokafka logs each failed connection attempt; the one line of `explained` says it all
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def main() -> load_generator.LoadReport:
        # the broker first, then the database: nothing changes unless both answer
        async with load_generator.connected_producer(settings) as producer:
            if args.seed_stock > 0:
                await load_generator.seed_stock(config, settings, args.seed_stock)
                print(
                    f"stock of {config.skus} SKUs set to {args.seed_stock} "
                    f"({config.sku(0).key} ...)",
                    file=sys.stderr,
                )
            progress = load_generator.Progress(config.count)
            return await load_generator.publish(
                config, settings, progress=progress, producer=producer
            )

    try:
        with explained(settings):
            report = asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    print(report.summary())
    return EXIT_OK
