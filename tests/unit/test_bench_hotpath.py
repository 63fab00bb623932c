"""``bench/hotpath.py`` drives the service's own per-order pieces in process: it breaks when
they move, and nothing else would notice. A smoke run, no timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_hotpath_bench_runs_and_prints_its_json_line() -> None:
    done = subprocess.run(
        [sys.executable, "bench/hotpath.py", "--batch", "20", "--repeat", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["bench"] == "hotpath"
    assert set(line["us_per_order"]) >= {"decode", "plan", "outbox", "write_plan", "total"}
