"""`inventory dev` as a user runs it: a process in its own group, its output line by line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from service.devtools.ports import StackPorts, free_port

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


@dataclass
class DevRun:
    """One `inventory dev` process, in its own process group like a terminal job."""

    proc: subprocess.Popen[str]
    ports: StackPorts
    grpc_port: int
    http_port: int
    data_dir: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def wait_for(self, wanted: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        while True:
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                pytest.fail(f"no {wanted!r} within {timeout_s} s:\n{self.transcript}")
            if line == "":  # end of output: the process exited
                pytest.fail(f"`inventory dev` exited before {wanted!r}:\n{self.transcript}")
            if line.strip() == wanted:
                return

    @property
    def transcript(self) -> str:
        return "".join(self.output)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; returns the exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`inventory dev` did not stop on SIGINT:\n{self.transcript}")

    def kill(self) -> None:
        """SIGKILL the group and whatever it started (the cleanup of a failed test)."""
        if self.proc.poll() is not None:
            return
        leftovers = self.descendants()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.Error:
                continue

    def psql(self, sql: str) -> str:
        return psql(self.ports, sql)


def _read_lines(run: DevRun) -> None:
    assert run.proc.stdout is not None
    for line in run.proc.stdout:
        run.output.append(line)
        run.lines.put(line)
    run.lines.put("")


def inventory_command() -> list[str]:
    script = Path(sys.executable).with_name("inventory")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


def dev_env(data_dir: Path, grpc_port: int, http_port: int) -> dict[str, str]:
    """The environment of an `inventory dev` on its embedded components only."""
    env = dict(os.environ)
    for name in ("INVENTORY_DATABASE_URL", "INVENTORY_REDIS_URL", "INVENTORY_KAFKA_BOOTSTRAP"):
        env.pop(name, None)  # these tests are about the embedded components
    env.update(
        INVENTORY_DEV_DATA_DIR=str(data_dir),
        INVENTORY_GRPC_HOST="127.0.0.1",
        INVENTORY_GRPC_PORT=str(grpc_port),
        INVENTORY_HTTP_HOST="127.0.0.1",
        INVENTORY_HTTP_PORT=str(http_port),
        PYTHONUNBUFFERED="1",
    )
    return env


def port_args(ports: StackPorts) -> list[str]:
    return [
        *("--postgres-port", str(ports.postgres)),
        *("--redis-port", str(ports.redis)),
        *("--kafka-port", str(ports.kafka)),
    ]


def start_dev(data_dir: Path, ports: StackPorts, *args: str) -> DevRun:
    """``inventory dev <args>`` on these ports, with free gRPC and HTTP ports."""
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*inventory_command(), "dev", *port_args(ports), *args],
        env=dev_env(data_dir, grpc_port, http_port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = DevRun(proc, ports, grpc_port, http_port, data_dir)
    threading.Thread(target=_read_lines, args=(run,), daemon=True).start()
    return run


def psql(ports: StackPorts, sql: str) -> str:
    from service.devtools.postgres import postgres_bin

    argv = [str(postgres_bin() / "psql"), "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]
    argv += ["-h", "127.0.0.1", "-p", str(ports.postgres), "-U", "postgres", "-d", "inventory"]
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    assert result.returncode == 0, f"psql {sql!r}: {result.stderr}"
    return result.stdout.strip()
