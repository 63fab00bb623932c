"""The committed generated code matches proto/ (regenerate with `make proto`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.api import codegen


def test_committed_generated_code_is_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    fresh = codegen.generate(tmp_path)
    stale = [
        path.name
        for path in fresh
        if not (codegen.GENERATED / path.name).exists()
        or (codegen.GENERATED / path.name).read_bytes() != path.read_bytes()
    ]
    assert not stale, f"stale generated code {stale}: run `make proto` and commit the result"


def test_generated_code_imports_from_the_package() -> None:
    from service.api.generated import inventory_pb2, inventory_pb2_grpc

    service = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"]
    assert service.full_name == "inventory.v1.InventoryService"
    assert {m.name for m in service.methods} == {
        "CheckStock",
        "ReserveStock",
        "ReleaseReservation",
        "CommitReservation",
        "UpdateStock",
        "GetStock",
        "BulkCheckStock",
        "SetStockPolicy",
    }
    assert inventory_pb2_grpc.InventoryServiceStub is not None
