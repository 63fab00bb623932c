"""Security: who may change stock, how much a caller may send, and what never reaches a log.

Against the real engine and PostgreSQL (docs/security.md lists the threat model and points
at these tests):

- UpdateStock needs the configured admin credential, over plaintext and over TLS alike; with
  no credential configured nobody is admin.
- The server bounds what one caller may send: the request size (``max_message_bytes``), the
  items per order, the length of every id and reason.
- A run that used the admin token leaves neither the token, nor its digest, nor the database
  password in the service's log, even at DEBUG.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy.engine import make_url

from db.seed import seed_demo
from service.api import server as grpc_api
from service.api.auth import token_digest
from service.api.generated import inventory_pb2 as pb
from service.api.generated import inventory_pb2_grpc as pb_grpc
from service.bootstrap import Container
from service.config import Settings
from service.invariants import check
from tests.chaos.driver import ServiceProcess, scenario_settings
from tests.unit.test_api_tls import credentials, pki  # noqa: F401  (pki is a fixture)
from tests.waiting import wait_for

pytestmark = pytest.mark.stack

TOKEN = "security-admin-token-5f2c9a"
WRONG = "not-the-admin-token-81d3e7"
ADMIN = (("authorization", f"Bearer {TOKEN}"),)
UPDATE = pb.UpdateStockRequest(product_id="prod-456", quantity=1, operation=pb.ADD)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


async def serve(container: Container, **changes: Any) -> grpc_api.GrpcServer:
    settings = container.settings.model_copy(
        update={"grpc_host": "127.0.0.1", "grpc_port": 0, **changes}
    )
    server = await grpc_api.start(settings, container)
    await server.set_serving(True)
    return server


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def assert_only_the_token_opens(stub: pb_grpc.InventoryServiceStub) -> None:
    refused = {
        "no metadata": (),
        "wrong token": (("authorization", f"Bearer {WRONG}"),),
        "no bearer scheme": (("authorization", TOKEN),),
        "the digest as token": (("authorization", f"Bearer {token_digest(TOKEN)}"),),
        "token in another header": (("x-admin-token", TOKEN),),
    }
    for what, metadata in refused.items():
        code = await code_of(stub.UpdateStock(UPDATE, metadata=metadata, timeout=10))
        assert code is grpc.StatusCode.UNAUTHENTICATED, what
    assert await code_of(stub.UpdateStock(UPDATE, metadata=ADMIN, timeout=10)) is grpc.StatusCode.OK


@pytest.fixture
async def demo(container: Container) -> Container:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    return container


async def test_update_stock_needs_the_token_over_plaintext(demo: Container) -> None:
    server = await serve(demo, admin_token_sha256=[token_digest(TOKEN)])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await assert_only_the_token_opens(pb_grpc.InventoryServiceStub(channel))
    finally:
        await server.stop(0)
    assert await check(demo.db) == []


@needs_openssl
async def test_update_stock_needs_the_token_over_tls(demo: Container, pki: Path) -> None:  # noqa: F811
    server = await serve(
        demo,
        admin_token_sha256=[token_digest(TOKEN)],
        tls_cert_file=pki / "server.pem",
        tls_key_file=pki / "server.key",
    )
    try:
        assert server.tls
        target = f"127.0.0.1:{server.port}"
        async with grpc.aio.secure_channel(target, credentials(pki, client_cert=False)) as channel:
            await assert_only_the_token_opens(pb_grpc.InventoryServiceStub(channel))
    finally:
        await server.stop(0)


async def test_without_a_configured_credential_nobody_is_admin(demo: Container) -> None:
    server = await serve(demo, admin_token_sha256=[])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            code = await code_of(stub.UpdateStock(UPDATE, metadata=ADMIN, timeout=10))
    finally:
        await server.stop(0)
    assert code is grpc.StatusCode.PERMISSION_DENIED


# -- limits on what one caller may send ----------------------------------------------------


@pytest.fixture
async def stub(demo: Container) -> AsyncIterator[pb_grpc.InventoryServiceStub]:
    server = await serve(demo, admin_token_sha256=[token_digest(TOKEN)])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield pb_grpc.InventoryServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


async def test_a_request_over_max_message_bytes_is_refused(
    stub: pb_grpc.InventoryServiceStub, demo: Container
) -> None:
    limit = demo.settings.max_message_bytes
    assert limit == Settings().max_message_bytes  # the default applies
    big = pb.BulkCheckStockRequest(items=[pb.StockItem(product_id="p" * (limit + 1), quantity=1)])
    assert await code_of(stub.BulkCheckStock(big, timeout=10)) is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_smaller_max_message_bytes_applies(demo: Container) -> None:
    server = await serve(demo, max_message_bytes=16 * 1024)
    request = pb.ReleaseReservationRequest(order_id="o", reason="r" * 20_000)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            code = await code_of(stub.ReleaseReservation(request, timeout=10))
    finally:
        await server.stop(0)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_oversized_metadata_is_refused(stub: pb_grpc.InventoryServiceStub) -> None:
    """grpc's own bound on headers (8 KiB soft, 16 KiB hard): a huge token never reaches us."""
    metadata = (("authorization", "Bearer " + "a" * 20_000),)
    code = await code_of(stub.UpdateStock(UPDATE, metadata=metadata, timeout=10))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


def items(n: int) -> list[pb.StockItem]:
    return [pb.StockItem(product_id=f"p-{i}", quantity=1) for i in range(n)]


async def test_item_count_is_bounded(stub: pb_grpc.InventoryServiceStub, demo: Container) -> None:
    limit = demo.settings.max_items_per_order
    over = [
        stub.ReserveStock(pb.ReserveStockRequest(order_id="many", items=items(limit + 1))),
        stub.BulkCheckStock(pb.BulkCheckStockRequest(items=items(limit + 1))),
    ]
    for call in over:
        assert await code_of(call) is grpc.StatusCode.INVALID_ARGUMENT
    at_limit = await code_of(stub.BulkCheckStock(pb.BulkCheckStockRequest(items=items(limit))))
    assert at_limit is grpc.StatusCode.OK


Build = Callable[[str], Any]
ID_FIELDS: dict[str, tuple[str, Build]] = {
    "CheckStock.product_id": (
        "CheckStock",
        lambda v: pb.CheckStockRequest(product_id=v, quantity=1),
    ),
    "CheckStock.warehouse_id": (
        "CheckStock",
        lambda v: pb.CheckStockRequest(product_id="prod-456", quantity=1, warehouse_id=v),
    ),
    "GetStock.variant_id": (
        "GetStock",
        lambda v: pb.GetStockRequest(product_id="prod-123", variant_id=v),
    ),
    "ReserveStock.order_id": (
        "ReserveStock",
        lambda v: pb.ReserveStockRequest(order_id=v, items=items(1)),
    ),
    "ReserveStock.items.product_id": (
        "ReserveStock",
        lambda v: pb.ReserveStockRequest(
            order_id="o-1", items=[pb.StockItem(product_id=v, quantity=1)]
        ),
    ),
    "BulkCheckStock.items.warehouse_id": (
        "BulkCheckStock",
        lambda v: pb.BulkCheckStockRequest(
            items=[pb.StockItem(product_id="prod-456", quantity=1, warehouse_id=v)]
        ),
    ),
    "CommitReservation.order_id": (
        "CommitReservation",
        lambda v: pb.CommitReservationRequest(order_id=v),
    ),
    "ReleaseReservation.order_id": (
        "ReleaseReservation",
        lambda v: pb.ReleaseReservationRequest(order_id=v),
    ),
    "UpdateStock.product_id": (
        "UpdateStock",
        lambda v: pb.UpdateStockRequest(product_id=v, quantity=1, operation=pb.ADD),
    ),
    "UpdateStock.idempotency_key": (
        "UpdateStock",
        lambda v: pb.UpdateStockRequest(
            product_id="prod-456", quantity=1, operation=pb.ADD, idempotency_key=v
        ),
    ),
}
TEXT_FIELDS: dict[str, tuple[str, Build]] = {
    "ReleaseReservation.reason": (
        "ReleaseReservation",
        lambda v: pb.ReleaseReservationRequest(order_id="o-1", reason=v),
    ),
    "UpdateStock.reason": (
        "UpdateStock",
        lambda v: pb.UpdateStockRequest(
            product_id="prod-456", quantity=1, operation=pb.ADD, reason=v
        ),
    ),
}


@pytest.mark.parametrize("field", sorted(ID_FIELDS) + sorted(TEXT_FIELDS))
async def test_ids_and_reasons_are_bounded(
    stub: pb_grpc.InventoryServiceStub, demo: Container, field: str
) -> None:
    """One character over the limit is INVALID_ARGUMENT; at the limit (in 4-byte UTF-8
    characters, the most bytes a character takes) the request passes validation and the
    database stores it."""
    method, build_request = {**ID_FIELDS, **TEXT_FIELDS}[field]
    limit = demo.settings.max_reason_length if field in TEXT_FIELDS else demo.settings.max_id_length
    call = getattr(stub, method)
    over = await code_of(call(build_request("x" * (limit + 1)), metadata=ADMIN, timeout=10))
    assert over is grpc.StatusCode.INVALID_ARGUMENT
    at = await code_of(call(build_request("🛒" * limit), metadata=ADMIN, timeout=10))
    assert at not in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
    ), at
    assert await check(demo.db) == []


def test_an_id_limit_the_schema_cannot_store_is_refused() -> None:
    """The id columns are varchar(128): a larger max_id_length would let ids through that
    the database then refuses (INTERNAL)."""
    with pytest.raises(ValueError, match="max_id_length"):
        Settings(max_id_length=129)


# -- secrets and logs ----------------------------------------------------------------------


# the DEBUG record of a refused call, without its time stamp
REFUSED_WRONG_TOKEN = {
    "level": "DEBUG",
    "logger": "service.api",
    "msg": "rpc refused: admin token not accepted",
    "method": "UpdateStock",
    "code": "UNAUTHENTICATED",
}


def records(log_path: Path) -> list[dict[str, Any]]:
    """The service's JSON log records, each without its time stamp."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            record.pop("ts", None)
            found.append(record)
    return found


def api_records(log_path: Path) -> list[dict[str, Any]]:
    return [record for record in records(log_path) if record["logger"] == "service.api"]


def with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


@pytest.mark.timeout(120)
async def test_no_secret_in_the_service_log(stack: Any, settings: Settings, tmp_path: Path) -> None:
    """Run ``serve --role all`` at DEBUG, use the admin token (right and wrong), then grep."""
    secrets = {"admin token": TOKEN, "wrong token": WRONG, "token digest": token_digest(TOKEN)}
    database_url = settings.database_url
    existing = make_url(database_url).password
    if existing:
        secrets["database password"] = str(existing)
    elif stack.postgres is not None:  # the embedded server trusts local users: any password
        secrets["database password"] = "db-password-7c41b0e2"
        database_url = with_password(database_url, secrets["database password"])
    run_settings = scenario_settings(
        stack.overrides,
        "seclog",
        database_url=database_url,
        admin_token_sha256=[token_digest(TOKEN)],
        topic_partitions=1,
    )
    log_path = tmp_path / "service.log"
    service = ServiceProcess(run_settings, "all", log_path, INVENTORY_LOG_LEVEL="DEBUG")
    try:
        await service.started()
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = pb_grpc.InventoryServiceStub(channel)
            assert await code_of(stub.UpdateStock(UPDATE, metadata=ADMIN)) is grpc.StatusCode.OK
            wrong = (("authorization", f"Bearer {WRONG}"),)
            refused = await code_of(stub.UpdateStock(UPDATE, metadata=wrong))
            assert refused is grpc.StatusCode.UNAUTHENTICATED
            reserve = pb.ReserveStockRequest(order_id="log-1", items=items(1))
            await code_of(stub.ReserveStock(reserve, metadata=ADMIN))
            await code_of(stub.GetStock(pb.GetStockRequest(product_id="prod-456"), metadata=ADMIN))
        # the log captured the run (a log that missed it would hide any leak): this record
        await wait_for(
            lambda: REFUSED_WRONG_TOKEN in records(log_path),
            within_s=30,
            what="the refusal of the wrong token logged",
            diagnose=lambda: f"the API's records: {api_records(log_path)}",
        )
    finally:
        await service.stop()
        service.kill()
    log = log_path.read_text(errors="replace")
    leaked = [what for what, secret in secrets.items() if secret in log]
    assert not leaked, f"found in {log_path}: {leaked}"
