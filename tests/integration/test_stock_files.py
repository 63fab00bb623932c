"""`inventory import` and `inventory export` against a served API (the real engine and
PostgreSQL): a 10,000-line file with 20 bad lines, its re-run, and an export round trip."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from db.seed import seed_demo
from service import invariants
from service.api.auth import AdminAuth, token_digest
from service.api.generated import inventory_pb2 as pb
from service.bootstrap import Container
from service.cli import main
from tests.integration.test_api import TOKEN, Api, serving

GOOD = 9_980


@pytest.fixture
async def api(container: Container, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    await seed_demo(container.db, container.settings.default_warehouse_id)
    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN", TOKEN)
    async with serving(container, AdminAuth([token_digest(TOKEN)])) as running:
        yield running


async def cli(api: Api, *args: str) -> int:
    """The command in a thread (its gRPC client is synchronous; the server runs on this loop)."""
    target = f"127.0.0.1:{api.server.port}"
    return await asyncio.to_thread(main, [*args, "--target", target])


def counts_file(path: Path) -> dict[int, str]:
    """10,000 lines; returns the line numbers of the 20 bad ones and why they are bad."""
    rows = [["product_id", "variant_id", "warehouse_id", "operation", "quantity", "reason"]]
    bad: dict[int, str] = {}
    for n in range(10_000):
        line = n + 2  # the header is line 1
        kind = n % 2000  # 5 lines of each bad kind
        if kind == 1:
            rows.append([f"imp-{n}", "", "nowhere", "SET", "5", "count"])
            bad[line] = "NOT_FOUND"
        elif kind == 2:
            rows.append([f"imp-{n}", "", "wh-east", "ADD", "-3", "count"])
            bad[line] = "INVALID_ARGUMENT"
        elif kind == 3:
            rows.append([f"imp-{n}", "", "wh-east", "SET", "4.5", "count"])
            bad[line] = "not an integer"
        elif kind == 4:
            rows.append(["prod-789", "", "wh-east", "SUBTRACT", "1000", "shrinkage"])
            bad[line] = "FAILED_PRECONDITION"
        else:
            warehouse = "wh-east" if n % 2 else "wh-west"
            rows.append([f"imp-{n % 4000}", "v", warehouse, "ADD", str(n % 7 + 1), "count"])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())
    return bad


async def levels(api: Api) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    found = {}
    token = ""
    while True:
        page = await api.stub.ListStock(pb.ListStockRequest(page_size=1000, page_token=token))
        for s in page.stock:
            key = (s.product_id, s.variant_id, s.warehouse_id)
            found[key] = (s.available, s.reserved, s.total)
        token = page.next_page_token
        if not token:
            return found


async def test_import_applies_good_lines_refuses_bad_ones_and_reruns_as_duplicates(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "counts.csv"
    bad = counts_file(path)
    assert await cli(api, "import", str(path)) == 1
    out = capsys.readouterr().out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"{GOOD} applied, 0 unchanged (duplicates), 20 refused: see ")
    )
    with (tmp_path / "counts.refused.csv").open() as refused_file:
        refused = list(csv.DictReader(refused_file))
    assert {int(row["line"]): row["refused_reason"] for row in refused}.keys() == bad.keys()
    for row in refused:
        assert bad[int(row["line"])] in row["refused_reason"], row
    assert (
        "warehouse nowhere"
        in next(r for r in refused if r["warehouse_id"] == "nowhere")["refused_reason"]
    )
    after_first = await levels(api)

    assert await cli(api, "import", str(path)) == 1
    out = capsys.readouterr().out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"0 applied, {GOOD} unchanged (duplicates), 20 refused")
    )
    assert await levels(api) == after_first
    assert await invariants.check(api.container.db) == []


async def test_an_export_imported_again_changes_no_level(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await api.stub.ReserveStock(
        pb.ReserveStockRequest(
            order_id="o-held", items=[pb.StockItem(product_id="prod-456", quantity=7)]
        )
    )
    before = await levels(api)
    capsys.readouterr()
    assert await cli(api, "export") == 0
    exported = capsys.readouterr().out
    lines = exported.strip().splitlines()
    assert lines[0] == "product_id,variant_id,warehouse_id,operation,quantity,reason"
    assert len(lines) == len(before) + 1
    path = tmp_path / "export.csv"
    path.write_text(exported)
    assert await cli(api, "import", str(path)) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"{len(before)} applied, 0 unchanged (duplicates), 0 refused"
    )
    assert await levels(api) == before
    assert not (tmp_path / "export.refused.csv").exists()

    assert await cli(api, "export", "--warehouse", "wh-west") == 0
    west = capsys.readouterr().out.strip().splitlines()[1:]
    assert west and all(row.split(",")[2] == "wh-west" for row in west)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "a header line is required"),
        ("product_id,quantity\nx,1\n", "missing warehouse_id, operation"),
        ("product_id,warehouse_id,operation,quantity,colour\n", "unknown colour"),
    ],
)
async def test_a_file_that_cannot_be_imported_is_exit_2_with_one_line(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert await cli(api, "import", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1], err


async def test_import_without_the_token_cannot_run(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("INVENTORY_ADMIN_TOKEN")
    path = tmp_path / "one.csv"
    path.write_text("product_id,warehouse_id,operation,quantity\nx,wh-east,ADD,1\n")
    assert await cli(api, "import", str(path)) == 2
    assert "INVENTORY_ADMIN_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN", "wrong")
    assert await cli(api, "import", str(path)) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err
