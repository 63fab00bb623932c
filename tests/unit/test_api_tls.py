"""TLS and mTLS from settings: certificates made with the openssl CLI, a fake engine."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from service.api import server as grpc_api
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import limits_from
from service.config import Settings
from service.domain.commands import UpdateStock
from service.domain.results import StockLevel, StockView
from service.domain.values import Sku

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")

LEVEL = StockLevel("s-1", Sku("p"), "default", 1, 0, 1, 1)


class Engine:
    def __init__(self) -> None:
        self.actors: list[str] = []

    async def update_stock(self, command: UpdateStock) -> StockLevel:
        self.actors.append(command.actor)
        return LEVEL


class Queries:
    async def get_stock(self, sku: Sku, warehouse_id: str | None) -> StockView:
        return StockView.of(sku, (LEVEL,))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all CA-signed."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, extra in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}-admin", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=d)  # fmt: skip
    return d


async def serve(settings: Settings) -> tuple[grpc_api.GrpcServer, Engine]:
    engine = Engine()
    container = SimpleNamespace(
        settings=settings, engine=engine, queries=Queries(), limits=limits_from(settings)
    )
    return await grpc_api.start(settings, container), engine  # type: ignore[arg-type]


def tls_settings(pki: Path, *, mtls: bool, **extra: Any) -> Settings:
    return Settings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        tls_cert_file=pki / "server.pem",
        tls_key_file=pki / "server.key",
        tls_client_ca_file=(pki / "ca.pem") if mtls else None,
        **extra,
    )


def credentials(pki: Path, *, client_cert: bool) -> grpc.ChannelCredentials:
    if not client_cert:
        return grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "client.key").read_bytes(),
        certificate_chain=(pki / "client.pem").read_bytes(),
    )


@pytest.fixture
async def tls_server(pki: Path) -> AsyncIterator[grpc_api.GrpcServer]:
    server, _ = await serve(tls_settings(pki, mtls=False))
    yield server
    await server.stop(0)


UPDATE = pb.UpdateStockRequest(product_id="p", quantity=1, operation=pb.ADD)


async def test_tls_serves_a_tls_client_and_keeps_the_token_rule(
    pki: Path, tls_server: grpc_api.GrpcServer
) -> None:
    assert tls_server.tls
    target = f"127.0.0.1:{tls_server.port}"
    async with grpc.aio.secure_channel(target, credentials(pki, client_cert=False)) as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        assert (await stub.GetStock(pb.GetStockRequest(product_id="p"))).total == 1
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UpdateStock(UPDATE)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED  # no token configured


async def test_tls_refuses_a_plaintext_client(tls_server: grpc_api.GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel:
        stub = pb_grpc.InventoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetStock(pb.GetStockRequest(product_id="p"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mtls_admits_a_verified_client_certificate_and_refuses_none(pki: Path) -> None:
    server, engine = await serve(tls_settings(pki, mtls=True))
    target = f"127.0.0.1:{server.port}"
    try:
        async with grpc.aio.secure_channel(target, credentials(pki, client_cert=True)) as channel:
            answer = await pb_grpc.InventoryServiceStub(channel).UpdateStock(UPDATE)
            assert answer.stock.total == 1
        assert engine.actors == ["cert:client-admin"]

        async with grpc.aio.secure_channel(target, credentials(pki, client_cert=False)) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetStock(pb.GetStockRequest(product_id="p"), timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


def test_half_a_tls_configuration_is_refused(pki: Path) -> None:
    with pytest.raises(ValueError, match="both"):
        grpc_api.server_credentials(Settings(tls_cert_file=pki / "server.pem"))
    with pytest.raises(ValueError, match="needs"):
        grpc_api.server_credentials(Settings(tls_client_ca_file=pki / "ca.pem"))
