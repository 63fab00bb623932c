"""Where the time goes: py-spy on the engine bench and on the pipeline's worker, as tables.

Three profiles under load, each sampled by py-spy (``--nonblocking``, collapsed stacks):

- ``engine``: this process running ``bench/engine.py``'s storm (64 callers, 10 hot SKUs,
  group commit) for ``--seconds``;
- ``worker``: the ``inventory serve --role worker`` process of ``bench/pipeline.py`` while it
  consumes ``--orders`` order-created events;
- ``api``: the ``inventory serve --role api`` process of ``bench/grpc_api.py`` while 64
  callers reserve over gRPC for ``--seconds`` (the client shares the cores).

Each becomes tables over the main thread's busy samples (the event loop waiting in epoll is
counted apart, as ``idle_pct_of_main_thread``; the other threads' shares as ``threads_pct``):
the top functions by own time (the sampled frame) with their cumulative share (on the
stack), the own time by package, and the cumulative share of the service's own pieces.
Prints one JSON line: {"bench": "profiling", "engine": {...}, "worker": {...}}; the collapsed
stacks stay under ``bench/results/`` (speedscope.app and flamegraph.pl read them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import grpc_api  # noqa: E402
from bench.baseline import seed_hot_stock  # noqa: E402
from bench.engine import SKUS, storm  # noqa: E402
from bench.pipeline import profile  # noqa: E402
from bench.stack import bench_stack  # noqa: E402
from service.devtools.ports import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# the leaf frame's file decides the package its own time is charged to
PACKAGES = (
    ("faust / mode (the per-message path)", ("/faust/", "/mode/", "/venusian/")),
    ("aiokafka (client)", ("/aiokafka/", "/kafka/")),
    ("asyncpg", ("/asyncpg/",)),
    ("sqlalchemy", ("/sqlalchemy/",)),
    ("asyncio event loop", ("/asyncio/", "uvloop")),
    ("json / orjson", ("/json/", "orjson")),
    ("logging / metrics", ("/logging/", "structlog", "prometheus_client")),
    ("service/domain (planner, validation)", ("service/domain/",)),
    ("service (engine, lifecycle)", ("service/",)),
    ("streams (agents, relay, handler)", ("streams/",)),
    ("db (SQL)", ("db/",)),
)
# the service's own pieces, charged cumulatively (anywhere on the stack)
PIECES = (
    ("engine (service/engine*.py)", ("service/engine",)),
    ("planner (service/domain/planner.py, allocation.py)", ("domain/planner", "domain/allocation")),
    ("validation (service/domain/validation.py)", ("domain/validation",)),
    ("outbox relay (streams/outbox.py)", ("streams/outbox",)),
    ("stream handler (streams/handler.py)", ("streams/handler",)),
    ("agents (streams/agents.py)", ("streams/agents",)),
    ("expiry agent (streams/expiry/)", ("streams/expiry/",)),
    ("gRPC servicers (service/api/)", ("service/api/",)),
    ("cache (service/cache/)", ("service/cache/",)),
    ("db statements (db/)", ("/db/",)),
    ("asyncpg", ("/asyncpg/",)),
    ("faust / mode", ("/faust/", "/mode/")),
)
FAUST_ONLY = "faust / mode / aiokafka, none of our code below (the per-message path)"
OURS = ("service/", "streams/", "db/")
FAUST = ("/faust/", "/mode/", "/aiokafka/")


def short(file: str) -> str:
    """A frame's file relative to the repository or to site-packages."""
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def parse(path: Path) -> tuple[list[tuple[list[tuple[str, str]], int]], Counter[str]]:
    """Collapsed stacks of the main thread, (frames root first as (function, file), samples),
    and the samples of every thread by name (``py-spy --threads`` puts it first)."""
    stacks = []
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        raws = stack.split(";")
        if raws[0].startswith("thread ("):
            thread = raws.pop(0).partition(": ")[2] or "?"
            threads[thread] += int(count)
            if thread != "MainThread":
                continue
        frames = []
        for raw in raws:
            match = FRAME.match(raw)
            if match:
                frames.append((match["function"], short(match["file"])))
        if frames:
            stacks.append((frames, int(count)))
    return stacks, threads


def idle(frames: list[tuple[str, str]]) -> bool:
    """The event loop waiting in epoll: the thread had nothing to run."""
    return frames[-1][1] == "selectors.py" and frames[-1][0].endswith(".select")


def package_of(file: str) -> str:
    probe = "/" + file
    for name, markers in PACKAGES:
        if any(m in probe for m in markers):
            return name
    return "other (stdlib, grpc, ...)"


def faust_only(frames: list[tuple[str, str]]) -> bool:
    """Faust's own per-message path: below its first frame, none of the service's code."""
    first = next((i for i, (_, f) in enumerate(frames) if any(m in "/" + f for m in FAUST)), None)
    return first is not None and not any(f.startswith(OURS) for _, f in frames[first:])


def tables(path: Path, top: int = 15) -> dict[str, object]:
    sampled, threads = parse(path)
    waiting = sum(count for frames, count in sampled if idle(frames))
    stacks = [(frames, count) for frames, count in sampled if not idle(frames)]
    total = sum(count for _, count in stacks) or 1
    own: Counter[tuple[str, str]] = Counter()
    cumulative: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    pieces: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        packages[package_of(frames[-1][1])] += count
        for frame in set(frames):
            cumulative[frame] += count
        files = {"/" + file for _, file in frames}
        for name, markers in PIECES:
            if any(m in f for f in files for m in markers):
                pieces[name] += count
        if faust_only(frames):
            pieces[FAUST_ONLY] += count

    def pct(n: int) -> float:
        return round(100 * n / total, 1)

    all_threads = sum(threads.values())
    return {
        "samples": total,
        "idle_pct_of_main_thread": round(100 * waiting / (total + waiting), 1),
        "threads_pct": {
            name: round(100 * n / all_threads, 1) for name, n in threads.most_common(4)
        },
        "top_own": [
            {"function": f"{fn} ({file})", "own_pct": pct(n), "cum_pct": pct(cumulative[frame])}
            for frame, n in own.most_common(top)
            for fn, file in [frame]
        ],
        "packages_own": [{"package": p, "own_pct": pct(n)} for p, n in packages.most_common()],
        "pieces_cum": [
            {"piece": p, "cum_pct": pct(pieces[p])}
            for p in [name for name, _ in PIECES] + [FAUST_ONLY]
        ],
    }


def py_spy(pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Raw collapsed stacks of the main thread, without pausing the process."""
    return profile(pid, output, max(1, round(seconds)), threads=False, nonblocking=True)


def profile_engine(seconds: float, output: Path) -> dict[str, float]:
    with bench_stack() as (_, settings):
        asyncio.run(seed_hot_stock(settings, SKUS))
        storm(settings, 2, 64, run="warm")
        spy = py_spy(os.getpid(), output, seconds)
        figures = storm(settings, seconds + 1, 64, run="prof")
        spy.wait()
    return figures


def profile_api(seconds: float, output: Path) -> dict[str, float]:
    """py-spy on ``inventory serve --role api`` while ``bench/grpc_api.py``'s 64 callers
    reserve (it starts after the client's one-second warm-up)."""
    token = secrets.token_urlsafe(24)
    with bench_stack() as (_, settings):
        grpc_port, http_port = free_port(), free_port()
        server = grpc_api.start_server(settings, grpc_port, http_port, token)
        try:
            grpc_api.wait_ready(server, http_port)
            spies: list[subprocess.Popen[bytes]] = []
            timer = threading.Timer(1.5, lambda: spies.append(py_spy(server.pid, output, seconds)))
            timer.start()
            figures = asyncio.run(grpc_api.measure(grpc_port, token, seconds + 1, 64))
            timer.join()
            for spy in spies:
                spy.wait()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    return figures


def profile_worker(orders: int, output: Path) -> dict[str, object]:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "pipeline.py"),
            "--orders",
            str(orders),
            "--baseline-seconds",
            "1",
            "--profile",
            str(output),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="engine storm under py-spy")
    parser.add_argument("--orders", type=int, default=20_000, help="pipeline orders under py-spy")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    engine_stacks, worker_stacks = args.out / "engine.stacks", args.out / "worker.stacks"
    api_stacks = args.out / "api.stacks"
    engine = profile_engine(args.seconds, engine_stacks)
    pipeline = profile_worker(args.orders, worker_stacks)
    api = profile_api(args.seconds, api_stacks)
    print(
        json.dumps(
            {
                "bench": "profiling",
                "engine": {
                    "orders_per_s_under_py_spy": engine["orders_per_s"],
                    **tables(engine_stacks, args.top),
                },
                "worker": {
                    "orders_per_s_under_py_spy": pipeline["orders_per_s"],
                    **tables(worker_stacks, args.top),
                },
                "api": {
                    "orders_per_s_under_py_spy": api["reserve_orders_per_s"],
                    **tables(api_stacks, args.top),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
