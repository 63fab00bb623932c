"""``inventory serve --role api --processes N``: N gRPC processes on one port, one HTTP.

The model is gRPC's ``examples/python/multiprocessing``: the supervisor reserves the port
with a socket that has SO_REUSEPORT set (bound, never listening), then forks the N processes
before any gRPC object exists in it. Each builds its own grpc.aio server with
``grpc.so_reuseport=1`` on that port, and the kernel spreads new connections (not calls: a
client's HTTP/2 connection stays with one process) over them.

Order of start-up, in the supervisor: logging; ``PROMETHEUS_MULTIPROC_DIR`` set to a fresh
directory before prometheus_client is imported (checked), so that every process's metrics
go to files there; the migrations, once; the port reserved (``grpc_port`` 0 picks a free
one, shared); then the forks, while the process has one thread (checked: nothing it
imported started one, gRPC included). Then ``service/process_group.py`` runs the group:
HTTP, readiness, signals, exits.

Each process runs ``lifecycle.run(..., supervised=True)``; its log lines carry ``child`` (its
index) and ``pid``. It reports "ready" over a socket pair, and stops (draining as usual)
on SIGTERM or when the supervisor's end of that socket closes (the supervisor is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

from service import event_loop
from service import logging as service_logging
from service.config import Role, Settings

log = logging.getLogger("service.supervisor")

READY = b"R"  # a process's one message to the supervisor
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass
class Child:
    """One forked API process, as the supervisor sees it."""

    index: int
    pid: int
    sock: socket.socket  # the supervisor's end of the pair
    state: str = "starting"  # starting, ready, exited
    exit_code: int | None = None  # os.waitstatus_to_exitcode: -N when killed by signal N


def refusal(settings: Settings) -> str | None:
    """Why these settings cannot run as several processes; None when they can."""
    if settings.api_processes == 1:
        return None
    if settings.role is not Role.API:
        return (
            f"{settings.api_processes} processes (--processes or INVENTORY_API_PROCESSES) "
            f"need --role api; role '{settings.role.value}' runs the stream worker, which is "
            "one process per pod (scale workers with replicas)"
        )
    if not hasattr(os, "pidfd_open") or not hasattr(socket, "SO_REUSEPORT"):
        return "several API processes on one port need Linux (SO_REUSEPORT, pidfd)"
    return None


def run(settings: Settings) -> int:
    """Run ``settings.api_processes`` API processes on one gRPC port until SIGTERM/SIGINT;
    returns the exit code: 0 after a signal and a clean drain, 1 when a process failed."""
    problem = refusal(settings)
    if problem is not None:
        raise ValueError(problem)
    restore_logging = service_logging.configure(settings)
    metrics_dir = tempfile.mkdtemp(prefix="inventory-metrics-")
    try:
        _multiprocess_metrics(metrics_dir)
        from db import migrate
        from service import process_group

        migrate.upgrade(settings.database_url, settings.default_warehouse_id)
        try:
            reserved = reserve_port(settings.grpc_host, settings.grpc_port)
        except OSError as exc:
            log.error(
                "cannot reserve the gRPC port",
                extra={"port": settings.grpc_port, "error": str(exc)},
            )
            return 1
        with reserved:
            port = int(reserved.getsockname()[1])
            child_settings = settings.model_copy(update={"grpc_port": port})
            early: list[int] = []  # stop signals that come before the supervisor's loop runs
            with _catching(early):
                children = fork_children(child_settings, reserved)
            log.info(
                "processes started",
                extra={
                    "processes": len(children),
                    "pids": [child.pid for child in children],
                    "grpc_port": port,
                    "metrics_dir": metrics_dir,
                },
            )
            return event_loop.run(
                process_group.supervise(child_settings, children, early), settings.event_loop
            )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        restore_logging()


def _multiprocess_metrics(directory: str) -> None:
    """prometheus_client picks its value class when it is first imported: it must not be yet."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: "
            "the processes' metrics would not be shared"
        )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket on ``host:port`` (0: a free port).

    A fixed port is first bound once without SO_REUSEPORT, so that a port somebody already
    serves on (another group of these processes included) fails here instead of being shared.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def os_threads() -> int:
    """Threads of this process, native ones included (gRPC's would not show in threading)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def fork_children(settings: Settings, reserved: socket.socket) -> list[Child]:
    """Fork ``settings.api_processes`` processes; stop signals are blocked around each fork,
    so that a child gets them only once it has its own handlers."""
    children: list[Child] = []
    try:
        for index in range(settings.api_processes):
            threads = os_threads()
            if threads != 1:
                raise RuntimeError(f"the supervisor must fork with one thread, it has {threads}")
            ours, theirs = socket.socketpair()
            sys.stdout.flush()
            sys.stderr.flush()
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:
                    for sock in (reserved, ours, *(child.sock for child in children)):
                        sock.close()
                    _child_main(index, settings, theirs)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            theirs.close()
            children.append(Child(index, pid, ours))
    except BaseException:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        raise
    return children


@contextlib.contextmanager
def _catching(caught: list[int]) -> Iterator[None]:
    """Remember stop signals until the supervisor's loop installs its own handlers (they stay
    installed after the block; restored only when it fails)."""

    def remember(signum: int, _: Any) -> None:
        caught.append(signum)

    previous = {signum: signal.signal(signum, remember) for signum in _STOP_SIGNALS}
    try:
        yield
    except BaseException:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        raise


# -- in a forked process ------------------------------------------------------------------


def _child_main(index: int, settings: Settings, sock: socket.socket) -> NoReturn:
    code = 1
    try:
        for signum in _STOP_SIGNALS:  # default until serve installs its own (blocked so far)
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        _tag_logs(index)
        code = event_loop.run(_child(settings, sock), settings.event_loop)
    except BaseException:
        log.exception("process failed")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _tag_logs(index: int) -> None:
    """Every log line of this process names it: ``child`` (index) and ``pid``."""
    make_record = logging.getLogRecordFactory()
    pid = os.getpid()

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.child = index
        record.pid = pid
        return record

    logging.setLogRecordFactory(tagged)


async def _child(settings: Settings, sock: socket.socket) -> int:
    from service import lifecycle

    loop = asyncio.get_running_loop()
    ready, stop = asyncio.Event(), asyncio.Event()
    sock.setblocking(False)

    def supervisor_gone() -> None:  # the supervisor never writes: readable means closed
        loop.remove_reader(sock.fileno())
        if not stop.is_set():
            log.warning("the supervisor is gone: draining")
            stop.set()

    async def report_ready() -> None:
        await ready.wait()
        await loop.sock_sendall(sock, READY)

    loop.add_reader(sock.fileno(), supervisor_gone)
    reporter = asyncio.create_task(report_ready())
    try:
        await lifecycle.run(settings, ready=ready, stop=stop, supervised=True)
    finally:
        reporter.cancel()
        loop.remove_reader(sock.fileno())
    return 0
