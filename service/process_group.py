"""The supervisor of ``serve --role api --processes N``, once its processes are forked.

Imported only after ``service/supervisor.py`` set ``PROMETHEUS_MULTIPROC_DIR``.

- HTTP for the group on ``http_port``: ``/metrics`` renders every process's metrics files
  (prometheus_client multiprocess mode: counters and histograms add up; each gauge combines
  by its ``multiprocess_mode``: pool figures add up, ``inventory_ready`` is the minimum;
  ``GroupCollector``);
  ``/readiness`` is 200 when every process reported ready and runs, and PostgreSQL is up and
  at head (the probes of a single process); ``/health`` is 200 while every process runs.
  Both list the processes (index, pid, state).
- SIGTERM/SIGINT: readiness goes false, every process gets SIGTERM and drains as ``serve``
  does (``shutdown_grace_s``); the supervisor exits 0 once all have exited cleanly. One still
  running ``KILL_AFTER_S`` after its grace is killed (exit 1).
- A process that exits on its own (a crash, a failed start, a kill) stops the group and the
  supervisor exits 1: nothing is restarted here, the orchestrator restarts the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Metric, multiprocess

from service import http, metrics
from service.config import Settings
from service.lifecycle import grpcurl_lines
from service.supervisor import READY, Child

log = logging.getLogger("service.supervisor")

KILL_AFTER_S = 20.0
CLEAN_EXITS = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


class GroupCollector:
    """Every process's metrics files, as MultiProcessCollector reads them, but without the
    supervisor's own gauges: it imported ``service.metrics`` too, so its files hold a 0 for
    every gauge, which would pin a ``livemin`` one at 0. Its readiness is the exception:
    ``inventory_ready`` is the minimum of the processes' and the supervisor's own (which its
    probes set: PostgreSQL, migrations)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._own_gauges = f"_{os.getpid()}.db"

    def collect(self) -> Iterator[Metric]:
        files = [
            path
            for path in glob.glob(os.path.join(self._path, "*.db"))
            if not (os.path.basename(path).startswith("gauge_") and path.endswith(self._own_gauges))
        ]
        ready = min(s.value for family in metrics.READY.collect() for s in family.samples)
        families: list[Metric] = multiprocess.MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
        for family in families:
            if family.name == "inventory_ready":
                family.samples = [s._replace(value=min(s.value, ready)) for s in family.samples]
            yield family


class GroupLifecycle(http.Lifecycle):
    """Ready once every process reported ready; not alive once any has exited."""

    def __init__(self, children: list[Child]) -> None:
        super().__init__()
        self.children = children

    def child_ready(self, child: Child) -> bool:
        """Record it; True when that made the whole group ready."""
        child.state = "ready"
        if self.phase is http.Phase.STARTING and all(c.state == "ready" for c in self.children):
            self.ready()
            return True
        return False

    def alive(self) -> bool:
        return all(child.state != "exited" for child in self.children)

    def details(self) -> dict[str, Any]:
        return {
            "processes": [
                {"index": c.index, "pid": c.pid, "state": c.state, "exit_code": c.exit_code}
                for c in self.children
            ]
        }


class Group:
    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.settings = settings
        self.children = children
        self.lifecycle = GroupLifecycle(children)
        self.stop = asyncio.Event()
        self.failed = False
        self.http_port: int | None = None
        self._exited = {child.pid: asyncio.Event() for child in children}
        self._watching = self._stopping = False

    async def run(self, early_signals: list[int]) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        if early_signals:
            self.stop.set()
        registry = CollectorRegistry()
        registry.register(GroupCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
        http_server = await http.start(self.settings, self.lifecycle, registry=registry)
        self.http_port = http_server.port
        try:
            self.watch()
            await self.stop.wait()
            await self.shutdown()
        finally:
            await http_server.stop()
        clean = all(child.exit_code in CLEAN_EXITS for child in self.children)
        return 0 if clean and not self.failed else 1

    def watch(self) -> None:
        """Read each process's socket (READY) and watch its pidfd (readable once it exits)."""
        if self._watching:
            return
        self._watching = True
        loop = asyncio.get_running_loop()
        for child in self.children:
            child.sock.setblocking(False)
            loop.add_reader(child.sock.fileno(), self._on_message, child)
            pidfd = os.pidfd_open(child.pid)
            loop.add_reader(pidfd, self._on_exit, child, pidfd)

    def _on_message(self, child: Child) -> None:
        try:
            data = child.sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # it is exiting; its pidfd tells when it has
            asyncio.get_running_loop().remove_reader(child.sock.fileno())
            child.sock.close()
        elif READY in data and child.state == "starting":
            log.info("process ready", extra={"child": child.index, "pid": child.pid})
            if self.lifecycle.child_ready(child):
                self._announce()

    def _on_exit(self, child: Child, pidfd: int) -> None:
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(child.pid, 0)  # it has exited: this does not block
        child.state, child.exit_code = "exited", os.waitstatus_to_exitcode(status)
        # its live gauges (ready, pool) leave the group's figures; counters stay
        multiprocess.mark_process_dead(child.pid)  # type: ignore[no-untyped-call]
        self._exited[child.pid].set()
        extra = {"child": child.index, "pid": child.pid, "exit_code": child.exit_code}
        if self._stopping:
            log.info("process exited", extra=extra)
            return
        log.error("process exited unexpectedly: stopping the group", extra=extra)
        self.failed = True
        self.stop.set()

    async def shutdown(self) -> None:
        """SIGTERM to every running process; wait for all (killing the late ones). Once."""
        if self._stopping:
            return
        self._stopping = True
        self.watch()
        self.lifecycle.drain()
        running = [child for child in self.children if child.state != "exited"]
        log.info(
            "draining", extra={"grace_s": self.settings.shutdown_grace_s, "processes": len(running)}
        )
        self._signal(running, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s + KILL_AFTER_S):
                await self._all_exited(running)
        except TimeoutError:
            late = [child for child in running if child.state != "exited"]
            log.error("processes did not stop: killing them", extra={"pids": [c.pid for c in late]})
            self.failed = True
            self._signal(late, signal.SIGKILL)
            await self._all_exited(late)
        log.info("stopped")

    async def _all_exited(self, children: list[Child]) -> None:
        await asyncio.gather(*(self._exited[child.pid].wait() for child in children))

    @staticmethod
    def _signal(children: list[Child], signum: int) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _announce(self) -> None:
        port = self.settings.grpc_port
        log.info(
            "ready",
            extra={
                "role": self.settings.role.value,
                "processes": len(self.children),
                "pids": [child.pid for child in self.children],
                "grpc_port": port,
                "http_port": self.http_port,
            },
        )
        tls = self.settings.tls_cert_file is not None
        lines = [f"inventory API on port {port} ({len(self.children)} processes); try:"]
        lines += [f"  {line}" for line in grpcurl_lines(self.settings, port, tls=tls)]
        print("\n".join(lines), flush=True)


async def supervise(settings: Settings, children: list[Child], early_signals: list[int]) -> int:
    """Run the group until a stop signal or a process's exit; the supervisor's exit code."""
    group = Group(settings, children)
    try:
        return await group.run(early_signals)
    finally:
        await group.shutdown()  # when run failed early (HTTP port taken): stop the processes
