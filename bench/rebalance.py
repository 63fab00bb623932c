"""What a rebalance costs: the pause in processing when a worker joins and when one leaves.

One worker consumes a steady stream of order events on the embedded stack (8 partitions, the
dev broker's timings: session 6 s, heartbeat 1 s, rebalance 3 s). A second worker joins and,
once it processes, leaves with SIGTERM; this repeats ``--rounds`` times. The database's count
of processed events is sampled every 50 ms; a change's *pause* is the longest stretch without
progress from the moment it was made until processing has gone on for a second. The figure
that holds across machines is the pause against the broker's rebalance timeout (ratio), not
the seconds. A stall over 0.5 s after the pause keeps the bench waiting for up to 30 s, then
the pause is the longest stall and the later ones are listed (``stalls_after_the_pause_s``).
Prints one JSON line last: {"bench": "rebalance", "join_pause_s", "leave_pause_s",
"rebalance_timeout_s", ...} (medians over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.pipeline import start_worker, stop_worker, wait_ready
from bench.stack import bench_stack
from db.session import create_engine
from service.config import Settings
from service.devtools import load_generator as loadgen
from streams.app import ensure_topics

SAMPLE_S = 0.05
SETTLED_S = 1.0  # progress for this long after a change: the change is over
GIVE_UP_S = 30.0  # the pause is the longest stall within this long after a change


class Progress:
    """Samples of (monotonic time, processed events) while a load runs."""

    def __init__(self, settings: Settings) -> None:
        self._db = create_engine(settings.database())
        self.samples: list[tuple[float, int]] = []
        self.unsettled: list[list[float]] = []  # per change that gave up: its later stalls
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Progress:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._db.dispose()

    async def _sample(self) -> None:
        sql = text("SELECT count(*) FROM processed_events")
        while True:
            async with self._db.connect() as conn:
                n = int((await conn.execute(sql)).scalar_one())
            self.samples.append((time.monotonic(), n))
            await asyncio.sleep(SAMPLE_S)

    async def pause_after(self, since: float) -> float:
        """The longest stretch without progress after ``since``, once processing has run
        smoothly (no stall over 0.5 s) for SETTLED_S after it. A later stall over 0.5 s
        keeps it waiting, up to GIVE_UP_S: then the longest stretch is the answer, and the
        later stalls are kept in ``unsettled`` (a noisy machine, or a second pause)."""
        while True:
            await asyncio.sleep(SETTLED_S / 2)
            moves = [t1 for (_, n0), (t1, n1) in pairwise(self.samples) if t1 >= since and n1 > n0]
            if not moves:
                if time.monotonic() - since > GIVE_UP_S:
                    raise RuntimeError(f"no progress for {GIVE_UP_S} s after a change")
                continue
            gaps = [(b - a, b) for a, b in pairwise([since, *moves])]
            longest, resumed = max(gaps)
            later = [round(gap, 2) for gap, end in gaps if end > resumed and gap > 0.5]
            if moves[-1] - resumed >= SETTLED_S and not later:
                return round(longest, 2)
            if time.monotonic() - since > GIVE_UP_S:
                self.unsettled.append(later)
                return round(longest, 2)


async def measure(settings: Settings, rounds: int, rate: float, logs: Path) -> dict[str, object]:
    first = start_worker(settings, logs / "first.log")
    await asyncio.to_thread(wait_ready, first, logs / "first.log")
    # enough events for every change to give up (publishing is cancelled when the rounds end)
    events = int(rate * (rounds * (2 * GIVE_UP_S + 10) + 20))
    config = loadgen.LoadConfig(count=events, rate=rate, run_id="rb")
    publishing = asyncio.create_task(loadgen.publish(config, settings))
    joins, leaves = [], []
    try:
        async with Progress(settings) as progress:
            await asyncio.sleep(3)
            for i in range(rounds):
                started = time.monotonic()
                second = start_worker(settings, logs / f"second-{i}.log")
                await asyncio.to_thread(wait_ready, second, logs / f"second-{i}.log")
                joins.append(await progress.pause_after(started))
                left = time.monotonic()
                await asyncio.to_thread(stop_worker, second)
                leaves.append(await progress.pause_after(left))
    finally:
        publishing.cancel()
        await asyncio.gather(publishing, return_exceptions=True)
        await asyncio.to_thread(stop_worker, first)
    timeout = settings.broker_rebalance_timeout_s
    return {
        "bench": "rebalance",
        "join_pause_s": statistics.median(joins),
        "leave_pause_s": statistics.median(leaves),
        "rebalance_timeout_s": timeout,
        "join_ratio": round(statistics.median(joins) / timeout, 2),
        "leave_ratio": round(statistics.median(leaves) / timeout, 2),
        "joins_s": joins,
        "leaves_s": leaves,
        "events_per_s": rate,
        "partitions": settings.topic_partitions,
        "stalls_after_the_pause_s": progress.unsettled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="joins and leaves measured")
    parser.add_argument("--rate", type=float, default=500.0, help="order events per second")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="inventory-bench-rebalance-"))
    with bench_stack() as (_, base):
        settings = base.isolated(uuid.uuid4().hex[:8], http_port=0, topic_partitions=8)
        asyncio.run(ensure_topics(settings))
        asyncio.run(loadgen.seed_stock(loadgen.LoadConfig(run_id="rb"), settings, 10**9))
        figures = asyncio.run(measure(settings, args.rounds, args.rate, logs))
    print(f"worker logs: {logs}", file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
