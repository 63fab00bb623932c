"""Which embedded stack owns a data folder or a port, and whether its owner still lives.

A stack holds an exclusive ``flock`` on ``<data folder>/instance.lock`` for as long as the
process that started it runs, and describes itself in ``instance.json`` (owner pid, ports,
URLs). The kernel drops the lock when the owner dies, however it dies, so:

- a lock that someone holds means a live instance: a second one refuses and touches nothing;
- a free lock means that whatever ``stack-pids.json`` lists is a leftover, safe to stop.

Commands (``service/commands/target.py``) read ``instance.json`` of a live instance to find
the stack of ``make run`` wherever its ports were moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCK_NAME = "instance.lock"
RECORD_NAME = "instance.json"


@dataclass(frozen=True)
class DevInstance:
    """A running stack: its owner process, what it listens on, where its data lives."""

    pid: int
    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        ports = ", ".join(f"{name} {port}" for name, port in self.ports.items())
        return f"pid {self.pid}, ports: {ports or 'none'}; data folder {self.data_dir}"


class StackInUse(RuntimeError):
    """A live stack owns the data folder or a port; nothing was changed."""


class InstanceLock:
    """The exclusive lock on a data folder, held by the process that runs its stack."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``StackInUse`` naming the live owner (changing nothing)."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = read_record(self.data_dir)
            what = owner.describe() if owner else f"data folder {self.data_dir}"
            raise StackInUse(f"an `inventory dev` is already running ({what})") from None
        self._fd = fd

    def record(self, ports: Mapping[str, int], urls: Mapping[str, str]) -> None:
        """Describe this instance for the commands and for a second start that must refuse."""
        path = self.data_dir / RECORD_NAME
        record = {"pid": os.getpid(), "ports": dict(ports), "urls": dict(urls)}
        path.write_text(json.dumps(record))
        path.chmod(0o600)  # an external database URL may carry a password

    def release(self) -> None:
        if self._fd is None:
            return
        (self.data_dir / RECORD_NAME).unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None


def is_locked(data_dir: Path) -> bool:
    """True while a live process holds the data folder's lock (tested without taking it)."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock, if it was taken
    return False


def read_record(data_dir: Path) -> DevInstance | None:
    try:
        record: dict[str, Any] = json.loads((data_dir / RECORD_NAME).read_text())
        return DevInstance(
            pid=int(record["pid"]),
            data_dir=data_dir,
            ports={str(k): int(v) for k, v in record.get("ports", {}).items()},
            urls={str(k): str(v) for k, v in record.get("urls", {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def live_instance(data_dir: Path) -> DevInstance | None:
    """The stack running on this data folder, if its owner is alive."""
    data_dir = data_dir.resolve()
    if not is_locked(data_dir):
        return None
    return read_record(data_dir) or DevInstance(pid=0, data_dir=data_dir)


def port_holder(host: str, port: int) -> str:
    """Who listens on ``port``: the live `inventory dev` it belongs to, else the process."""
    try:
        import psutil
    except ImportError:
        return "another program"
    try:
        listeners = [
            conn.pid
            for conn in psutil.net_connections("tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        ]
    except psutil.Error:
        listeners = []
    for pid in listeners:
        if pid is None:
            continue
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            instance = _owning_instance(process)
            if instance is not None:
                return f"the `inventory dev` running as {instance.describe()}"
            return f"pid {pid} ({process.name()})"
    return "another program"


def _owning_instance(process: Any) -> DevInstance | None:
    """The instance whose lock this process or one of its ancestors holds open."""
    import psutil

    for candidate in (process, *process.parents()):
        with contextlib.suppress(psutil.Error):
            for opened in candidate.open_files():
                path = Path(opened.path)
                if path.name == LOCK_NAME and (found := live_instance(path.parent)):
                    return found
    return None
