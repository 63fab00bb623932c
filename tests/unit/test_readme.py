"""The README's configuration table lists every setting, with its true default."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from service.config import Settings

README = Path(__file__).parents[2] / "README.md"
ROW = re.compile(r"^\|\s*`(INVENTORY_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|")


def documented() -> dict[str, str]:
    """Variable -> default cell, from the rows of the README's tables."""
    rows = {}
    for line in README.read_text().splitlines():
        if match := ROW.match(line):
            rows[match.group(1)] = match.group(2)
    return rows


def render(value: Any) -> str:
    """A default as the README writes it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, list):
        return f"`{value!r}`"
    if isinstance(value, timedelta):  # a duration as the environment takes it: ISO 8601
        return f"`{TypeAdapter(timedelta).dump_python(value, mode='json')}`"
    return f"`{value}`"


def default_of(name: str) -> Any:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    assert field.default is not PydanticUndefined, f"{name} has no default"
    return field.default


def env_name(name: str) -> str:
    return f"INVENTORY_{name.upper()}"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme_with_its_default(name: str) -> None:
    rows = documented()
    variable = env_name(name)
    assert variable in rows, f"README.md: add {variable} to the configuration table"
    assert rows[variable] == render(default_of(name)), (
        f"README.md: the default of {variable} is {render(default_of(name))}"
    )


def test_the_readme_lists_no_setting_that_does_not_exist() -> None:
    known = {env_name(name) for name in Settings.model_fields}
    stale = sorted(set(documented()) - known)
    assert not stale, f"README.md lists settings that Settings does not have: {stale}"


def test_the_readme_tries_the_calls_the_banner_prints() -> None:
    import shlex

    from service.lifecycle import grpcurl_lines

    block = README.read_text().split("## Try it", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    calls = [shlex.split(call) for call in block.replace("\\\n", " ").splitlines() if call]
    banner = [shlex.split(line) for line in grpcurl_lines(Settings(), 4004, tls=False)]
    assert calls == banner
