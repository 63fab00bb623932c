"""End-to-end orders/s through Kafka: publish N order-created events, consume all their results.

One worker process (``inventory serve --role worker``) on the embedded stack, 10 hot SKUs,
1-2 items per order; the clock runs from the first publish to the last result event read
from ``inventory-reservations``. In the same run: the seed's design driven by pgbench on the
same 10 hot SKUs, best of 8 and 64 clients (``bench/baseline.py``, the baseline), and the
worker's peak RSS. Prints one JSON line last:
{"bench": "pipeline", "orders_per_s", "seed_design_tps", "ratio", "worker_peak_rss_mb", ...}.
Targets (issue 19): >= 5,500 orders/s, ratio >= 3.5, RSS < 300 MB. The pipeline has no
concurrency knob of its own (one worker, its partitions): one figure, at the defaults.

The clock stops when the last result is read, but the worker is not done then: its expiry agent
consumes the same results to schedule each reservation's expiry, and in a burst it falls
behind and catches up afterwards (about a second of one core after 20,000 orders). So a
second round follows at once, as much again: it does its own orders and what the first left
behind, as a worker under a steady load does. ``sustained_orders_per_s`` is its rate and
``sustained_ratio`` its ratio to the seed design; ``worker_cpu_us_per_order`` and
``sustained_worker_cpu_us_per_order`` are the worker's CPU (all its threads) per order of each.

``--profile FILE`` records the worker with py-spy during the measured run: a flame graph
(``.svg``) or collapsed stacks (any other suffix; ``bench/profiling.py`` tables them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import rdkafka_load
from bench.baseline import ratio, seed_design_baseline, seed_hot_stock
from bench.stack import bench_stack
from service.config import Settings
from service.devtools import load_generator as loadgen
from service.devtools.observe import TopicCollector
from streams.app import ensure_topics

READY_LINE = b"stream worker started"


def run_settings(base: Settings) -> Settings:
    return base.isolated(uuid.uuid4().hex[:8], http_port=0, log_format="text")


def worker_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.as_env()}
    env["INVENTORY_ROLE"] = "worker"
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("inventory")
    command = ([str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]) + [
        "serve",
        "--role",
        "worker",
    ]
    log = log_path.open("wb")
    return subprocess.Popen(command, env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM (the worker drains), then SIGKILL if it has not exited within ``grace_s``."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def wait_ready(worker: subprocess.Popen[bytes], log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while READY_LINE not in log_path.read_bytes():
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not start; see {log_path}")
        time.sleep(0.1)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def worker_cpu_s(pid: int) -> float:
    """CPU seconds the process has used, all its threads, user and system."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def load(count: int, run: str) -> loadgen.LoadConfig:
    return loadgen.LoadConfig(
        count=count,
        rate=0,
        skus=10,
        hot_skus=10,
        hot_share=1.0,
        created=1,
        paid=0,
        cancelled=0,
        max_items=2,
        max_quantity=1,
        prefix="BENCH",
        run_id=run,
        seed=1,
    )


LOAD_CLIENTS = ("librdkafka", "aiokafka")


async def orders_through(
    settings: Settings, count: int, run: str, *, client: str = "librdkafka"
) -> dict[str, float]:
    """Publish ``count`` orders and wait for each one's result event; orders/s and outcomes.

    The bench shares the two cores with the service, so its own work is kept out of the way:
    the events are made and the producer connected before the clock starts (an upstream
    service does that on its own machines), each result is read once as it arrives and the
    results are decoded after the clock stops. ``client``: librdkafka (``bench/rdkafka_load.py``,
    C threads, the default) or aiokafka (Python, in this event loop; what the bench used
    before, kept for comparison). The topics exist already: ``main`` creates them once.
    """
    config = load(count, run)
    events = list(loadgen.EventSource(config))
    prefix = f"BENCH-{run}-"
    within_s = max(120.0, count / 200)
    if client == "librdkafka":
        elapsed, raws = await asyncio.to_thread(
            _through_rdkafka, settings, events, prefix, within_s
        )
    else:
        elapsed, raws = await _through_aiokafka(settings, config, events, prefix, within_s)
    statuses = [json.loads(raw)["status"] for raw in raws]
    return {
        "orders_per_s": round(count / elapsed, 1),
        "seconds": round(elapsed, 2),
        "reserved": statuses.count("RESERVED"),
        "rejected": statuses.count("REJECTED"),
    }


def _through_rdkafka(
    settings: Settings, events: list[loadgen.OrderEvent], prefix: str, within_s: float
) -> tuple[float, list[bytes]]:
    reader = rdkafka_load.ResultReader(
        settings.kafka_bootstrap, settings.topic_reservations, prefix.encode(), len(events)
    )
    reader.start()
    made = rdkafka_load.producer(settings.kafka_bootstrap)
    started = time.perf_counter()
    rdkafka_load.publish(made, settings, events, within_s)
    return reader.wait(within_s) - started, reader.values


async def _through_aiokafka(
    settings: Settings,
    config: loadgen.LoadConfig,
    events: list[loadgen.OrderEvent],
    prefix: str,
    within_s: float,
) -> tuple[float, list[bytes]]:
    count = len(events)
    out = TopicCollector(settings.kafka_bootstrap, [settings.topic_reservations], decode=False)
    await out.start()
    try:
        await out.wait_caught_up()
        ours: list[bytes] = []
        read = len(out.records.get(settings.topic_reservations, []))

        def all_in() -> bool:
            nonlocal read
            records = out.records.get(settings.topic_reservations, [])
            ours.extend(r.raw or b"" for r in records[read:] if str(r.key).startswith(prefix))
            read = len(records)
            return len(ours) >= count

        async with loadgen.connected_producer(settings) as producer:
            started = time.perf_counter()
            await loadgen.publish(config, settings, producer=producer, events=events)
            await out.wait_for(all_in, within_s=within_s, what=f"{count} results")
            elapsed = time.perf_counter() - started
    finally:
        await out.stop()
    return elapsed, ours


def profile(
    pid: int, path: Path, seconds: int, *, threads: bool = True, nonblocking: bool = False
) -> subprocess.Popen[bytes]:
    """py-spy on a process: a flame graph (.svg) or raw collapsed stacks (any other suffix)."""
    spy = Path(sys.executable).with_name("py-spy")
    form = "flamegraph" if path.suffix == ".svg" else "raw"
    return subprocess.Popen(
        [
            str(spy) if spy.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            *(["--threads"] if threads else []),
            *(["--nonblocking"] if nonblocking else []),
            "--format",
            form,
            "--output",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=30_000, help="orders in the measured run")
    parser.add_argument("--warmup", type=int, default=3_000, help="orders before measuring")
    parser.add_argument("--baseline-seconds", type=float, default=5, help="pgbench, per side")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy flame graph (SVG)")
    parser.add_argument(
        "--client", choices=LOAD_CLIENTS, default="librdkafka", help="publishes and reads results"
    )
    args = parser.parse_args()

    with bench_stack() as (stack, base):
        settings = run_settings(base)
        asyncio.run(ensure_topics(settings))
        skus = [sku.product_id for sku in load(0, "seed").all_skus]
        asyncio.run(seed_hot_stock(settings, skus))
        baseline = seed_design_baseline(stack, args.baseline_seconds, sku_prefix=skus[0][:-1])
        log_path = Path(tempfile.mkstemp(prefix="inventory-bench-worker-", suffix=".log")[1])
        worker = start_worker(settings, log_path)
        try:
            wait_ready(worker, log_path)
            asyncio.run(orders_through(settings, args.warmup, "warmup", client=args.client))
            duration = int(args.orders / 2_000 + 5)
            spy = profile(worker.pid, args.profile, duration) if args.profile else None
            cpu = [worker_cpu_s(worker.pid)]
            rounds = []
            for _ in range(2):  # the measured burst, then the sustained round right behind it
                run = uuid.uuid4().hex[:6]
                rounds.append(
                    asyncio.run(orders_through(settings, args.orders, run, client=args.client))
                )
                cpu.append(worker_cpu_s(worker.pid))
            figures, sustained = rounds
            rss = peak_rss_mb(worker.pid)
            if spy is not None:
                spy.wait()
        finally:
            stop_worker(worker)
    print(f"worker log: {log_path}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "orders_per_s": figures["orders_per_s"],
                **baseline,
                "ratio": ratio(figures["orders_per_s"], baseline),
                "worker_peak_rss_mb": round(rss, 1),
                "sustained_orders_per_s": sustained["orders_per_s"],
                "sustained_ratio": ratio(sustained["orders_per_s"], baseline),
                "worker_cpu_us_per_order": round((cpu[1] - cpu[0]) / args.orders * 1e6),
                "sustained_worker_cpu_us_per_order": round((cpu[2] - cpu[1]) / args.orders * 1e6),
                "orders": args.orders,
                "load_client": args.client,
                "seconds": figures["seconds"],
                "reserved": figures["reserved"],
                "rejected": figures["rejected"],
                "targets": {"orders_per_s": 5500, "ratio": 3.5, "worker_peak_rss_mb": 300},
            }
        )
    )


if __name__ == "__main__":
    main()
