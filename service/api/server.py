"""The grpc.aio server: InventoryService, grpc.health.v1, reflection, optional TLS / mTLS."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.api.auth import AdminAuth
from service.api.errors import ErrorInterceptor
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.api.servicer import InventoryServicer
from service.bootstrap import Container
from service.config import Settings

log = logging.getLogger("service.api")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InventoryService"].full_name
HEALTH_NAMES = ("", SERVICE_NAME)
_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
)


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate and key are configured; mTLS (client cert required) with a CA."""
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    client_ca = settings.tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    tls: bool

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in HEALTH_NAMES:
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs, give in-flight ones ``grace_s`` to finish, then cancel the rest."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)


async def start(
    settings: Settings,
    container: Container,
    *,
    auth: AdminAuth | None = None,
    reuse_port: bool = False,
) -> GrpcServer:
    """Bind ``settings.grpc_host:grpc_port`` (0 picks a free port) and start serving.

    Alone, a server on a taken port must fail, not share it silently (gRPC's Linux default is
    SO_REUSEPORT on); ``reuse_port`` is for the processes of ``service/supervisor.py``, which
    share the port that their supervisor reserved.
    """
    options = (
        *_OPTIONS,
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=options)
    servicer = InventoryServicer(container, auth or AdminAuth.from_settings(settings))
    pb_grpc.add_InventoryServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    await server.start()
    grpc_server = GrpcServer(server, health_servicer, port, tls=credentials is not None)
    await grpc_server.set_serving(False)
    log.info("grpc listening", extra={"port": port, "tls": grpc_server.tls})
    return grpc_server
