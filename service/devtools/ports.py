"""The ports of the embedded stack: the fixed ones of ``inventory dev``, free ones, taken ones."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

from service.devtools.instance import StackInUse, port_holder

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StackPorts:
    """TCP ports of the three components; ``None`` picks a free one."""

    postgres: int | None = None
    redis: int | None = None
    kafka: int | None = None


# The one place for the fixed ports of `inventory dev`: near, not on, the standard ones.
DEV_PORTS = StackPorts(postgres=15432, redis=16379, kafka=19092)


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


def claim_port(name: str, port: int | None) -> int:
    if port is None:
        return free_port()
    ensure_ports_free({name: port})
    return port
