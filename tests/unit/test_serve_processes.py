"""`serve --processes N` without a stack: the setting, the flag, refusals, the port, imports."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Gauge
from pydantic import ValidationError

import service.metrics
from service import cli, supervisor
from service.commands import serve as serve_command
from service.config import Role, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_api_processes_defaults_to_one_comes_from_the_environment_and_is_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().api_processes == 1
    monkeypatch.setenv("INVENTORY_API_PROCESSES", "4")
    assert Settings().api_processes == 4
    with pytest.raises(ValidationError):
        Settings(api_processes=0)


@pytest.mark.parametrize("text", ["0", "-1", "two"])
def test_the_flag_takes_only_a_positive_count(text: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["serve", "--processes", text])
    assert exit_.value.code == 2


def test_only_the_api_role_may_run_several_processes() -> None:
    assert supervisor.refusal(Settings(role=Role.API, api_processes=3)) is None
    assert supervisor.refusal(Settings(role=Role.WORKER, api_processes=1)) is None
    for role in (Role.WORKER, Role.ALL):
        problem = supervisor.refusal(Settings(role=role, api_processes=2))
        assert problem is not None and "--role api" in problem and f"'{role.value}'" in problem


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["serve", "--role", "worker", "--processes", "2"], {}),
        (["serve", "--processes", "2"], {"INVENTORY_ROLE": "all"}),
        (["serve", "--role", "all"], {"INVENTORY_API_PROCESSES": "3"}),
    ],
)
def test_serve_refuses_several_processes_outside_the_api_role(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(supervisor, "run", pytest.fail)  # refused before anything starts
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("inventory serve: ") and "need --role api" in err


def test_the_refusal_is_a_message_and_exit_code_2_not_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--role", "worker", "--processes", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "need --role api" in done.stderr and "Traceback" not in done.stderr


def test_the_flag_overrides_the_setting_and_picks_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVENTORY_API_PROCESSES", "5")
    chosen: list[Settings] = []

    def fake_run(settings: Settings) -> int:
        chosen.append(settings)
        return 7

    monkeypatch.setattr(supervisor, "run", fake_run)
    args = argparse.Namespace(role="api", processes=3)
    assert serve_command.run(args) == 7
    assert (chosen[0].role, chosen[0].api_processes) == (Role.API, 3)


def test_one_process_is_the_plain_serve_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from service import lifecycle

    calls: list[dict[str, Any]] = []

    async def fake_serve(settings: Settings, **kwargs: Any) -> None:
        calls.append({"settings": settings, **kwargs})

    monkeypatch.setattr(supervisor, "run", pytest.fail)
    monkeypatch.setattr(lifecycle, "run", fake_serve)
    assert serve_command.run(argparse.Namespace(role="api", processes=None)) == 0
    assert serve_command.run(argparse.Namespace(role="api", processes=1)) == 0
    assert [call.keys() for call in calls] == [{"settings"}, {"settings"}]  # not supervised


def test_a_reserved_port_is_shared_only_by_reuseport_sockets() -> None:
    reserved = supervisor.reserve_port("127.0.0.1", 0)
    with reserved:
        port = reserved.getsockname()[1]
        assert reserved.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        sharing = socket.socket()  # what each process's gRPC server does on the port
        sharing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sharing.bind(("127.0.0.1", port))
        sharing.listen()
        with sharing, pytest.raises(OSError):
            supervisor.reserve_port("127.0.0.1", port)  # a second group must not share it
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))


def test_a_port_in_use_cannot_be_reserved() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            supervisor.reserve_port("127.0.0.1", taken.getsockname()[1])


def test_every_gauge_combines_across_processes_without_a_pid_label() -> None:
    gauges = [m for m in vars(service.metrics).values() if isinstance(m, Gauge)]
    assert gauges
    for gauge in gauges:
        mode = gauge._multiprocess_mode
        assert mode not in ("all", "liveall"), (
            f"{gauge._name}: give it a multiprocess_mode (livesum, livemax, livemin, ...): "
            "under `serve --processes N` 'all' adds a pid label to every series"
        )


IMPORTS = """
import os, sys
import service.cli, service.supervisor
before = sorted(m for m in ('grpc', 'prometheus_client') if m in sys.modules)
import service.lifecycle, service.api.server, service.http, db.migrate  # what the processes run
print(before, len(os.listdir('/proc/self/task')))
"""


def test_the_supervisor_can_fork_after_importing_the_service() -> None:
    """The CLI and the supervisor load neither gRPC nor prometheus_client (the metrics mode
    must be set first); loading all the processes run starts no thread, native ones included,
    so forking after it is safe (the supervisor checks this again before each fork)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "1"]


def write_gauges(path: Path, name: str, values: dict[str, float]) -> None:
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    files = MmapedDict(str(path / name))
    try:
        for metric, value in values.items():
            files.write_value(mmap_key(metric, metric, (), (), "doc"), value, 0.0)
    finally:
        files.close()


def test_the_group_scrape_leaves_out_the_supervisors_gauges_but_its_readiness(
    tmp_path: Path,
) -> None:
    """The supervisor imported the metrics too: its zeros must not pin a livemin gauge."""
    import os

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from service.process_group import GroupCollector

    own = os.getpid()
    live = {"inventory_ready": 1.0, "inventory_cache_near_live": 1.0}
    write_gauges(tmp_path, "gauge_livemin_4000001.db", live)
    write_gauges(tmp_path, "gauge_livemin_4000002.db", live)
    write_gauges(tmp_path, f"gauge_livemin_{own}.db", dict.fromkeys(live, 0.0))
    write_gauges(tmp_path, "gauge_livesum_4000001.db", {"inventory_db_pool_size": 10.0})
    write_gauges(tmp_path, "gauge_livesum_4000002.db", {"inventory_db_pool_size": 10.0})
    registry = CollectorRegistry()
    registry.register(GroupCollector(str(tmp_path)))

    def scrape() -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    try:
        service.metrics.READY.set(1)  # the supervisor's own readiness (its probes)
        assert scrape() == {
            "inventory_ready": 1.0,
            "inventory_cache_near_live": 1.0,
            "inventory_db_pool_size": 20.0,
        }
        service.metrics.READY.set(0)
        assert scrape()["inventory_ready"] == 0.0
    finally:
        service.metrics.READY.set(0)
