"""``bench/growth.py`` in a tiny configuration: the keys issue 17's targets are read from, the
size series, and a steady run that keeps to its order rate. A smoke run on an embedded stack
of its own; no timing asserted (a slow machine only makes fewer orders)."""

from __future__ import annotations

import pytest

from tests.unit.test_bench_reservations import bench


@pytest.mark.stack
def test_the_growth_bench_fills_measures_and_keeps_the_steady_rate() -> None:
    rate, seconds, callers = 40.0, 4.0, 4
    line = bench(
        "bench/growth.py",
        *("--past-orders", "2000", "--load-seconds", "1", "--callers", str(callers)),
        *("--steady-seconds", str(seconds), "--sample-seconds", "1"),
        *("--prune-interval", "0.5", "--steady-rate", str(rate)),
    )
    assert line["bench"] == "growth"
    assert line["past_orders"] == 2000
    assert line["fresh_orders_per_s"] > 0 and line["grown_orders_per_s"] > 0
    assert line["bytes_per_order"] > 0
    assert line["steady_rate"] == rate
    # each caller keeps its own schedule: at most one order ahead of it
    assert 0 < line["steady_orders_per_s"] * seconds <= rate * seconds + callers
    assert len(line["steady_size_series"]) >= 3
    assert isinstance(line["steady_growth_last_minute"], float)
