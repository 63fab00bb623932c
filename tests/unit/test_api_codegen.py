"""The committed generated code matches proto/ (regenerate with `make proto`)."""

from __future__ import annotations

import subprocess
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

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
        "ExtendReservation",
        "GetOrder",
        "ListStock",
        "ListMovements",
        "ListWarehouses",
        "UpsertWarehouse",
        "TransferStock",
        "ReturnStock",
        "BulkUpdateStock",
    }
    assert inventory_pb2_grpc.InventoryServiceStub is not None


def committed_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto | None:
    """The proto as the last commit has it, compiled; None outside a git checkout."""
    done = subprocess.run(
        ["git", "show", f"HEAD:proto/{codegen.PROTO_FILE}"],
        cwd=codegen.ROOT,
        capture_output=True,
        timeout=30,
    )
    if done.returncode != 0:
        return None
    source = tmp_path / "proto" / codegen.PROTO_FILE
    source.parent.mkdir(parents=True)
    source.write_bytes(done.stdout)
    from grpc_tools import protoc

    out = tmp_path / "committed.pb"
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{tmp_path / 'proto'}",
        f"-I{well_known}",
        f"--descriptor_set_out={out}",
        codegen.PROTO_FILE,
    ]
    assert protoc.main(args) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[0]


def test_the_proto_only_adds_to_what_was_committed(tmp_path: Path) -> None:
    """Backwards compatible: every field, enum value and RPC of the committed proto is still
    there with the same number, name, type and cardinality."""
    pytest.importorskip("grpc_tools")
    from service.api.generated import inventory_pb2

    old = committed_descriptor(tmp_path)
    if old is None:
        pytest.skip("not a git checkout")
    new = descriptor_pb2.FileDescriptorProto()
    inventory_pb2.DESCRIPTOR.CopyToProto(new)

    def fields(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[str, int], tuple]:
        return {
            (message.name, f.number): (f.name, f.type, f.label, f.type_name, f.proto3_optional)
            for message in file.message_type
            for f in message.field
        }

    def values(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[str, int], str]:
        return {(e.name, v.number): v.name for e in file.enum_type for v in e.value}

    def methods(file: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[str, str]]:
        return {m.name: (m.input_type, m.output_type) for s in file.service for m in s.method}

    for kind, of in (("field", fields), ("enum value", values), ("rpc", methods)):
        before, after = of(old), of(new)
        changed = {
            key: (was, after.get(key)) for key, was in before.items() if after.get(key) != was
        }
        assert not changed, f"{kind}s changed or removed: {changed}"
    assert new.package == old.package
