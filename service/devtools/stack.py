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
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from service.devtools.broker import TANSU_BROKER_SETTINGS, Broker
from service.devtools.instance import LOCK_NAME, RECORD_NAME, InstanceLock
from service.devtools.ports import StackPorts, claim_port, ensure_ports_free
from service.devtools.postgres import Postgres, postgres_bin
from service.devtools.process import StackError, stop_leftovers, write_pid_file
from service.devtools.redis import Redis

log = logging.getLogger(__name__)
_C = TypeVar("_C")

STARTUP_TIMEOUT_S = 60.0
PIDS_NAME = "stack-pids.json"
# what a stack keeps in its data directory; `reset_data_dir` deletes nothing else
DATA_DIR_ENTRIES = frozenset({LOCK_NAME, RECORD_NAME, PIDS_NAME, "postgres", "redis", "logs"})


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
        stop_leftovers(data_dir / PIDS_NAME)
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
            stop_leftovers(self.pid_file)  # the lock is ours: their owner is gone
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
        return postgres_bin()

    @property
    def pgbench_path(self) -> Path:
        return postgres_bin() / "pgbench"

    @property
    def psql_path(self) -> Path:
        return postgres_bin() / "psql"

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
        write_pid_file(self.pid_file, [c.process for c in self._components()])

    def _create_components(self) -> None:
        if self.external.kafka_bootstrap is None:
            self.broker = Broker(claim_port("tansu", self.ports.kafka), self.log_dir)
        if self.external.redis_url is None:
            port = claim_port("redis", self.ports.redis)
            self.redis = Redis(port, self.data_dir / "redis", self.log_dir)
        if self.external.database_url is None:
            port = claim_port("postgres", self.ports.postgres)
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
