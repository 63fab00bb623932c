"""CPU per order of the worker's hot paths, in process: no database, no broker.

Each figure is the best of several repetitions, in µs per order, of one piece of what the
worker does for an order-created event reserving 1-2 of 10 hot SKUs (quantity 1):

- ``decode``: bytes of the event to a validated ``Reserve`` (``decode_order_event``);
- ``plan``: ``plan_batch`` over a batch of ``--batch`` such commands, against fresh stock rows;
- ``outbox``: the engine's outbox rows for that plan (stock-changed and reservation payloads);
- ``claim``: the batch's event keys, the claim's document for ``ledger.load_batch`` and the
  duplicates among them;
- ``write_plan``: the engine's parameter building for ``write_plan`` (JSON documents), against a
  connection that answers instantly;
- ``expiry``: the expiry agent's ``apply`` of the RESERVED events, through the changelog
  writer's encoding into real producer batches (the send is a no-op);
- ``relay``: the outbox relay turning fetched rows into producer batches.

``--tree DIR`` imports the service from another copy of the source (e.g. a checkout of the
previous commit); ``--compare DIR`` runs that copy in a subprocess first and prints both, with
the ratio before/after. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOT_SKUS = [f"hot-{i}" for i in range(10)]
PIECES = ("decode", "plan", "outbox", "claim", "write_plan", "expiry", "relay")


def order_events(count: int, seed: int) -> list[bytes]:
    import random

    rng = random.Random(seed)
    events = []
    for n in range(count):
        skus = rng.sample(HOT_SKUS, rng.choice((1, 2)))
        body = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "order_id": f"order-{seed}-{n:08d}",
            "items": [{"product_id": sku, "quantity": 1} for sku in skus],
            "occurred_at": "2026-01-01T00:00:00.000Z",
            "ttl_seconds": 900,
        }
        events.append(json.dumps(body).encode())
    return events


def best_us(run: Callable[[], object], per: int, repeat: int) -> float:
    """Best of ``repeat`` timed calls, in µs per unit of work."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return round(best / per * 1e6, 2)


def drive(coroutine: Any) -> Any:
    """Run a coroutine that never really waits (its I/O is faked) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine waited")


class Conn:
    """Answers every statement at once, as the driver connection ``write_plan`` calls."""

    async def fetchrow(self, statement: str, *args: Any) -> None:
        return None


def measure(batch: int, repeat: int) -> dict[str, float]:
    from datetime import UTC, datetime

    from db import outbox_sql, plan_sql
    from db.ledger import json_document
    from service.domain.commands import Command, OrderEventKind
    from service.domain.planner import plan_batch
    from service.domain.snapshot import Snapshot, StockRow, Warehouse
    from service.domain.validation import Limits
    from service.domain.values import Levels, Sku
    from service.engine import EngineConfig
    from service.engine_claims import duplicates_among, events_to_claim
    from service.ids import IdSource
    from streams.records import decode_order_event

    limits = Limits()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    kind = OrderEventKind.CREATED
    events = order_events(batch, seed=1)
    commands: list[Command] = [decode_order_event(kind, raw, limits) for raw in events]
    ids = IdSource()

    def snapshot() -> Snapshot:
        rows = {
            f"00000000-0000-4000-8000-{i:012d}": StockRow(
                f"00000000-0000-4000-8000-{i:012d}",
                Sku(sku),
                "default",
                Levels(10**9, 5_000, 10**9 + 5_000),
                42,
                100,
                True,
            )
            for i, sku in enumerate(HOT_SKUS)
        }
        return Snapshot(stocks=rows, warehouses={"default": Warehouse("default", 100, True)})

    def plan() -> Any:
        return plan_batch(
            snapshot(),
            commands,
            duplicates=frozenset(),
            now=now,
            allow_split=True,
            new_id=ids.next,
        )

    config = EngineConfig()
    a_plan = plan()

    def outbox_of(the_plan: Any) -> Any:
        return the_plan.outbox(
            now,
            stock_changed_topic=config.topic_stock_changed,
            reservations_topic=config.topic_reservations,
            stock_alerts_topic=config.topic_stock_alerts,
        )

    outbox = outbox_of(a_plan)
    conn = Conn()

    def decode() -> None:
        for raw in events:
            decode_order_event(kind, raw, limits)

    def plan_only() -> None:
        plan_batch(
            snapshot(),
            commands,
            duplicates=frozenset(),
            now=now,
            allow_split=True,
            new_id=ids.next,
        )

    def claim() -> None:  # the keys, the document ledger.load_batch sends, the duplicates
        keyed, rows = events_to_claim(commands)
        json_document(rows)
        duplicates_among(keyed, set(keyed))

    figures = {
        "decode": best_us(decode, batch, repeat),
        # the snapshot's ten rows are rebuilt inside the timing: a few µs per batch
        "plan": best_us(plan_only, batch, repeat),
        "outbox": best_us(
            lambda: outbox_of(a_plan),
            batch,
            repeat,
        ),
        "claim": best_us(claim, batch, repeat),
        "write_plan": best_us(
            lambda: drive(plan_sql.write_plan(conn, a_plan, outbox)),  # type: ignore[arg-type]
            batch,
            repeat,
        ),
    }
    figures["expiry"] = measure_expiry(outbox, batch, repeat)
    rows = [
        outbox_sql.OutboxRow(i, topic, key, json.dumps(payload).encode())
        for i, (topic, key, payload) in enumerate(outbox)
    ]
    figures["relay"] = measure_relay(rows, batch, repeat)
    return figures


class Producer:
    """Real producer batches; sends succeed at once."""

    def create_batch(self) -> Any:
        from aiokafka.producer.message_accumulator import BatchBuilder

        return BatchBuilder(256 * 1024, 0)

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[object]:
        batch.close()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(12))


def measure_expiry(outbox: list[tuple[str, str, dict[str, Any]]], batch: int, repeat: int) -> float:
    from service.config import Settings
    from streams.app import create_app
    from streams.expiry.agent import ExpiryAgent
    from streams.expiry.changelog import ChangelogWriter

    settings = Settings(app_id="bench-hotpath", topic_partitions=12)
    reserved = [p for topic, _, p in outbox if topic == settings.topic_reservations]
    rounds = []
    for r in range(repeat):  # fresh order ids each round: each is a new table entry
        events = []
        for n, payload in enumerate(reserved):
            order_id = f"{payload['order_id']}-{r}"
            body = json.dumps({**payload, "order_id": order_id}).encode()
            events.append((n % 12, order_id.encode(), body))
        rounds.append(events)

    async def run() -> float:
        agent = ExpiryAgent(create_app(settings), settings, NoEngine())
        writer = ChangelogWriter(settings, lambda: "bench-changelog")
        writer._producer = Producer()  # type: ignore[assignment]
        agent.changelog = writer
        best = float("inf")
        for events in rounds:
            gc.collect()
            started = time.perf_counter()
            await agent.apply(events)
            best = min(best, time.perf_counter() - started)
        return round(best / batch * 1e6, 2)

    return asyncio.run(run())


class NoEngine:
    async def expire(self, order_ids: Any) -> list[Any]:
        raise AssertionError("not benchmarked")


def measure_relay(rows: list[Any], batch: int, repeat: int) -> float:
    from service.config import Settings
    from streams.outbox import OutboxRelay

    async def run() -> float:
        relay = OutboxRelay(Settings(app_id="bench-hotpath"))
        relay._producer = Producer()  # type: ignore[assignment]
        fetched = [(r.id, r.topic, r.key, r.payload.decode()) for r in rows]

        class Fetch:
            async def fetch(self, sql: str, limit: int) -> list[tuple[Any, ...]]:
                return fetched

        from db import outbox_sql

        best = float("inf")
        for _ in range(repeat):
            gc.collect()
            started = time.perf_counter()
            got = await outbox_sql.fetch_unpublished(Fetch(), len(fetched))  # type: ignore[arg-type]
            await relay._send(got)
            best = min(best, time.perf_counter() - started)
        return round(best / batch * 1e6, 2)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=200, help="orders per engine batch")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to import")
    parser.add_argument("--compare", type=Path, help="a baseline source tree to run as well")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tree (--compare)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    if args.compare is not None:
        # alternate the two trees and keep each piece's best: the machine's noise is shared
        before, after = {}, {}
        for _ in range(args.rounds):
            for tree, best in ((args.compare, before), (args.tree, after)):
                command = [sys.executable, __file__, "--tree", str(tree)]
                command += ["--batch", str(args.batch), "--repeat", str(args.repeat)]
                run = subprocess.run(command, check=True, capture_output=True, text=True)
                for piece, us in json.loads(run.stdout.splitlines()[-1])["us_per_order"].items():
                    best[piece] = min(best.get(piece, us), us)
        report: dict[str, Any] = {"bench": "hotpath", "batch": args.batch, "us_per_order": after}
        report["before_us_per_order"] = before
        report["speedup"] = {p: round(before[p] / after[p], 2) for p in after if after[p]}
        print(json.dumps(report))
        return
    figures = measure(args.batch, args.repeat)
    figures["total"] = round(sum(figures[p] for p in PIECES), 2)
    print(json.dumps({"bench": "hotpath", "batch": args.batch, "us_per_order": figures}))


if __name__ == "__main__":
    main()
