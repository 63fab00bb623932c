"""``make bench``: run the benches one after the other and collect their JSON lines.

Each bench runs as its own process (its own embedded stack); its last stdout line is its JSON,
printed here as it arrives and written to ``--out`` (``bench/results/latest.jsonl``), with
``elapsed_s`` and the load average at its end added. The first line describes the machine
and the run; a bench that fails gives ``{"bench": NAME, "error": ...}`` and the others still
run. Each bench's stderr goes to ``bench/results/logs/NAME.log``. ``bench/report.py`` turns
the file into ``docs/bench.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.devtools.postgres import postgres_bin  # noqa: E402

# (name, arguments, timeout in seconds): about 12 minutes on the 2-core development machine;
# a timeout is about 3x the bench's usual time (the rebalance bench waits for the processing
# to settle, which a busy machine may never let it do)
BENCHES: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("engine", (), 240),
    ("pipeline", (), 180),
    ("grpc_api", (), 150),
    ("cache", (), 270),
    ("profiling", (), 300),
    ("load", ("--seconds", "30"), 200),
    ("rebalance", (), 180),
    ("outbox_latency", (), 120),
    ("expiry", (), 480),
    ("as_of", (), 150),
)


def machine() -> dict[str, object]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    postgres = subprocess.run(
        [str(postgres_bin() / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "bench": "machine",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "postgres": postgres,
        "python": platform.python_version(),
        "commit": commit,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def run(name: str, arguments: tuple[str, ...], logs: Path, timeout_s: float) -> dict[str, object]:
    """One bench in a session of its own, so that a bench past ``timeout_s`` is interrupted
    with its whole stack (SIGINT lets it stop its processes; SIGKILL after a grace)."""
    started = time.monotonic()
    log = logs / f"{name}.log"
    with log.open("w") as stderr:
        bench = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / f"{name}.py"), *arguments],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, _ = bench.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stdout = interrupt(bench)
            return {
                "bench": name,
                "error": f"timed out after {timeout_s:.0f} s; see {log}",
                "elapsed_s": round(time.monotonic() - started, 1),
            }
    elapsed = round(time.monotonic() - started, 1)
    lines = stdout.strip().splitlines()
    try:
        result: dict[str, object] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = {"bench": name, "error": f"exit {bench.returncode}, no JSON line; see {log}"}
    if bench.returncode != 0 and "error" not in result:
        result["error"] = f"exit {bench.returncode}; see {log}"
    result.setdefault("bench", name)
    # the machine is shared: the load average says how much else ran beside the bench
    return {**result, "elapsed_s": elapsed, "load_average_1m": round(os.getloadavg()[0], 2)}


def interrupt(bench: subprocess.Popen[str], grace_s: float = 60) -> str:
    os.killpg(bench.pid, signal.SIGINT)
    try:
        stdout, _ = bench.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(bench.pid, signal.SIGKILL)
        stdout, _ = bench.communicate()
    return stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.jsonl")
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {name for name, _, _ in BENCHES}
    logs = args.out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        results = (
            run(name, arguments, logs, timeout_s)
            for name, arguments, timeout_s in BENCHES
            if name in wanted
        )
        for result in itertools.chain([machine()], results):
            line = json.dumps(result)
            print(line, flush=True)
            out.write(line + "\n")
            out.flush()


if __name__ == "__main__":
    main()
