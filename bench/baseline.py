"""Baselines measured in the same run as a benchmark, on the same database.

``pgbench_hot_tps``: one conditional UPDATE per transaction on 10 hot rows, 8 clients:
what PostgreSQL does here without batching.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

HOT_SCRIPT = "\\set id random(1, 10)\nUPDATE bench_hot SET n = n - 1 WHERE id = :id AND n >= 1;\n"


def pgbench_hot_tps(pgbench: Path, psql: Path, libpq_url: str, seconds: int = 10) -> float:
    setup = (
        "DROP TABLE IF EXISTS bench_hot; CREATE TABLE bench_hot (id int PRIMARY KEY, n bigint);"
        "INSERT INTO bench_hot SELECT g, 1000000000 FROM generate_series(1, 10) g;"
    )
    subprocess.run([str(psql), libpq_url, "-q", "-c", setup], check=True, capture_output=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(HOT_SCRIPT)
    Path(script.name).chmod(0o644)
    out = subprocess.run(
        [
            str(pgbench),
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            script.name,
            libpq_url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    Path(script.name).unlink()
    match = re.search(r"tps = ([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"pgbench printed no tps:\n{out}")
    return float(match.group(1))
