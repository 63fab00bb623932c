"""The dashboard and alerts query only metrics that a running service's /metrics exports.

tests/unit/test_deploy_dashboard.py checks the same against the rendered registry; this one
scrapes a real `inventory serve --role all` process, which has imported everything it runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from service.devtools.ports import free_port
from tests.e2e.worker_process import still_running
from tests.waiting import wait_for

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "deploy_dashboard", HERE.parent / "unit" / "test_deploy_dashboard.py"
)
assert _spec is not None and _spec.loader is not None
deploy_dashboard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_dashboard)

pytestmark = pytest.mark.stack


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        return str(reply.read().decode())


def test_dashboard_and_alerts_use_only_exported_metrics(settings, tmp_path):
    http_port = free_port()
    env = {
        **os.environ,
        **{
            f"INVENTORY_{k.upper()}": str(v)
            for k, v in settings.model_dump().items()
            if v is not None and not isinstance(v, list)
        },
        "INVENTORY_HTTP_PORT": str(http_port),
        "INVENTORY_GRPC_PORT": str(free_port()),
        "INVENTORY_HTTP_HOST": "127.0.0.1",
        "INVENTORY_GRPC_HOST": "127.0.0.1",
        "INVENTORY_APP_ID": f"metrics-{http_port}",
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--role", "all"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        exposition = asyncio.run(
            wait_for(
                lambda: asyncio.to_thread(_scrape, http_port),
                within_s=60,
                what="/metrics answering",
                every_s=0.2,
                alive=[still_running(process)],
                ignoring=(OSError,),  # not listening yet
                diagnose=(tmp_path / "serve.log").read_text,
            )
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    exported = deploy_dashboard.exported_metric_names(exposition)
    for expr in deploy_dashboard.dashboard_exprs():
        used = set(deploy_dashboard.METRIC.findall(expr))
        assert used <= exported, f"not exported: {sorted(used - exported)} in {expr}"
    for rule in deploy_dashboard.alert_rules():
        used = set(deploy_dashboard.METRIC.findall(rule["expr"]))
        assert used <= exported, f"{rule['alert']}: not exported {sorted(used - exported)}"
