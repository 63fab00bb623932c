"""`inventory import` end to end: a CSV of 100,000 lines through BulkUpdateStock.

On the embedded stack (free ports, temporary directory): ``inventory serve --role api`` in its
own process, then the real command (`inventory import FILE.csv`, its own process too) on a
file of 100,000 ADD lines over 20,000 SKUs in the default warehouse; then the same file again
(every line a duplicate). Prints one JSON line last: ``import_lines_per_s`` (first run, wall
time of the command), ``rerun_lines_per_s``, the exit codes and summary lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.grpc_api import start_server, wait_ready  # noqa: E402
from bench.stack import bench_stack  # noqa: E402
from service.devtools.ports import free_port  # noqa: E402


def write_file(path: Path, lines: int, skus: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["product_id", "variant_id", "warehouse_id", "operation", "quantity"])
        for n in range(lines):
            writer.writerow([f"bench-{n % skus}", "", "default", "ADD", n % 9 + 1])


def run_import(path: Path, grpc_port: int, token: str) -> tuple[float, int, str]:
    env = {**os.environ, "INVENTORY_ADMIN_TOKEN": token}
    target = f"127.0.0.1:{grpc_port}"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "import", str(path), "--target", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    return took, done.returncode, done.stdout.strip().splitlines()[-1] if done.stdout else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=20_000)
    args = parser.parse_args()
    token = secrets.token_urlsafe(24)
    with bench_stack() as (_, settings), tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "counts.csv"
        write_file(path, args.lines, args.skus)
        grpc_port, http_port = free_port(), free_port()
        server = start_server(settings, grpc_port, http_port, token)
        try:
            wait_ready(server, http_port)
            first_s, first_code, first = run_import(path, grpc_port, token)
            again_s, again_code, again = run_import(path, grpc_port, token)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(
        json.dumps(
            {
                "bench": "import_csv",
                "lines": args.lines,
                "skus": args.skus,
                "import_lines_per_s": round(args.lines / first_s, 1),
                "import_seconds": round(first_s, 2),
                "rerun_lines_per_s": round(args.lines / again_s, 1),
                "exit_codes": [first_code, again_code],
                "summaries": [first, again],
            }
        )
    )


if __name__ == "__main__":
    main()
