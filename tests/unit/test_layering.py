"""Which layer may import which: the service never loads the dev tooling, ``db`` knows nothing
of the service's settings, the domain is plain Python."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVTOOLS = "service.devtools"

# What `inventory serve` loads in every role: the CLI (all the commands' parsers), the one
# process (lifecycle: gRPC, HTTP, the stream worker) and the `--processes N` supervisor.
PRODUCTION_ENTRY_MODULES = (
    "service.cli",
    "service.commands.serve",
    "service.lifecycle",
    "service.bootstrap",
    "service.api.server",
    "service.http",
    "service.supervisor",
    "service.process_group",
    "streams.worker",
    "streams.app",
    "db.migrate",
)

# Dev commands, which import the dev tooling inside the function that runs them: `inventory
# serve` builds the same parser, so at module level they would load it into production.
DEV_COMMANDS = ("service/commands/dev.py", "service/commands/loadgen.py")
# Finds the `make run` stack for a command given no URL; in production the URLs are set.
DEV_STACK_LOOKUP = ("service/commands/target.py",)

IMPORTS_THEN_LIST_DEVTOOLS = f"""
import sys
import {", ".join(PRODUCTION_ENTRY_MODULES)}
print(*sorted(m for m in sys.modules if m == "{DEVTOOLS}" or m.startswith("{DEVTOOLS}.")))
"""


def test_the_production_entry_points_do_not_load_the_dev_tooling() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_THEN_LIST_DEVTOOLS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"imported by `inventory serve`: {done.stdout}"


def test_only_dev_commands_import_the_dev_tooling_and_only_when_they_run() -> None:
    offenders: set[str] = set()
    for path in python_files("service", "streams", "db"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("service/devtools/"):
            continue
        allowed_lazily = relative in DEV_COMMANDS + DEV_STACK_LOOKUP
        offenders |= {
            f"{relative}:{node.lineno}"
            for module, node, in_function in imports(path)
            if is_within(module, DEVTOOLS) and not (allowed_lazily and in_function)
        }
    assert not offenders, f"production code imports {DEVTOOLS}: {sorted(offenders)}"


# The top: the command line and the process, which start the stream worker. Below them the
# rest of ``service`` (engine, cache, API, reads) is what ``streams`` builds on.
ENTRY_LEVEL = ("service/cli.py", "service/commands/", "service/lifecycle.py", "service/devtools/")


def test_below_the_entry_points_service_never_imports_streams() -> None:
    offenders = {
        f"{relative}:{node.lineno} {module}"
        for path in python_files("service")
        if not (relative := path.relative_to(ROOT).as_posix()).startswith(ENTRY_LEVEL)
        for module, node, _ in imports(path)
        if is_within(module, "streams")
    }
    assert not offenders, f"service imports streams (a cycle): {sorted(offenders)}"


def test_db_imports_nothing_of_the_service_but_its_domain() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}:{node.lineno} {module}"
        for path in python_files("db")
        for module, node, _ in imports(path)
        if (
            is_within(module, "service") and not is_within(module, "service.domain")
        )  # settings too
        or is_within(module, "streams")
    }
    assert not offenders, f"db imports beyond service.domain: {sorted(offenders)}"


def test_the_domain_imports_only_the_standard_library_and_itself() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno} {module}"
        for path in python_files("service/domain")
        for module, node, _ in imports(path)
        if not (
            is_within(module, "service.domain")
            or module.partition(".")[0] in sys.stdlib_module_names
        )
    ]
    assert offenders == [], f"service/domain imports beyond the standard library: {offenders}"


# --- reading imports ------------------------------------------------------------------------


def python_files(*folders: str) -> list[Path]:
    files = sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folders}: the test reads the wrong place"
    return files


def imports(path: Path) -> Iterator[tuple[str, ast.Import | ast.ImportFrom, bool]]:
    """(module, statement, inside a function) for each module an import of ``path`` names.

    ``from a import b`` names ``a`` and ``a.b``, since ``b`` may be a module; relative imports
    are resolved. Imports under ``if TYPE_CHECKING:`` are left out: they never run."""
    package = path.relative_to(ROOT).parts[:-1]  # of an __init__.py too: its own folder

    def modules(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        parts = list(package[: len(package) - node.level + 1]) if node.level else []
        base = ".".join([*parts, *([node.module] if node.module else [])])
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]

    def visit(
        node: ast.AST, in_function: bool
    ) -> Iterator[tuple[str, ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from ((module, node, in_function) for module in modules(node))
            return
        is_type_checking = isinstance(node, ast.If) and _is_type_checking(node.test)
        children = node.orelse if is_type_checking else ast.iter_child_nodes(node)
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in children:
            yield from visit(child, inside)

    return visit(ast.parse(path.read_text(), str(path)), False)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_is_over_400_lines() -> None:
    # a module that long holds more than one concept: split it by what it holds
    long = {
        f"{path.relative_to(ROOT)}: {lines}"
        for path in python_files("service", "streams", "db")
        if "generated" not in path.parts and (lines := len(path.read_text().splitlines())) > 400
    }
    assert not long, f"modules over 400 lines: {sorted(long)}"
