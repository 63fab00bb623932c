"""The ports of the embedded stack: the fixed ones of ``inventory dev``, free ones, taken ones."""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


# Ports the kernel gives to outgoing connections (``ip_local_port_range``): a port picked by
# binding to 0 comes from there, and any client socket (a database connection, a Kafka fetch)
# can take it before the server that was meant to listen on it starts. Free ports are picked
# below it instead, and never twice by one process.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LISTEN_PORTS = range(20_000, 32_768)
_handed_out: set[int] = set()


def _listen_ports() -> range:
    try:
        first_ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LISTEN_PORTS
    return range(_LISTEN_PORTS.start, min(_LISTEN_PORTS.stop, first_ephemeral))


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range, not handed out before here."""
    candidates = _listen_ports()
    for port in random.sample(candidates, k=min(200, len(candidates))):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
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
