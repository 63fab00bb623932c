"""`command_settings`: the environment's URLs win, else the live `make run` stack's, else the
fixed dev ports; one line on stderr says which."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.commands.target import command_settings
from service.devtools.instance import InstanceLock
from service.devtools.ports import DEV_PORTS

URL_VARIABLES = ("INVENTORY_DATABASE_URL", "INVENTORY_KAFKA_BOOTSTRAP", "INVENTORY_REDIS_URL")


@pytest.fixture(autouse=True)
def no_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INVENTORY_DEV_DATA_DIR", str(tmp_path / "dev"))


def test_a_url_in_the_environment_wins(monkeypatch, capsys):
    monkeypatch.setenv("INVENTORY_DATABASE_URL", "postgresql://app:pw@db.example:5432/inv")

    settings = command_settings("check")

    assert settings.database_url == "postgresql+asyncpg://app:pw@db.example:5432/inv"
    assert capsys.readouterr().err == (
        "inventory check: connecting to PostgreSQL postgresql://app:***@db.example:5432/inv "
        "(INVENTORY_DATABASE_URL)\n"
    )


def test_with_no_stack_running_the_fixed_dev_ports(capsys):
    settings = command_settings("migrate")

    assert settings.database_url.endswith(f"@127.0.0.1:{DEV_PORTS.postgres}/inventory")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none runs on" in err


def test_a_live_stack_says_where_it_listens(tmp_path, capsys):
    lock = InstanceLock(tmp_path / "dev")
    lock.acquire()
    try:
        lock.record(
            {"postgres": 25432},
            {
                "database_url": "postgresql+asyncpg://postgres@127.0.0.1:25432/inventory",
                "kafka_bootstrap": "127.0.0.1:29092",
                "redis_url": "redis://127.0.0.1:26379/0",
            },
        )
        settings = command_settings("loadgen", ("kafka_bootstrap", "database_url"))
    finally:
        lock.release()

    assert settings.kafka_bootstrap == "127.0.0.1:29092"
    assert settings.database_url.endswith("@127.0.0.1:25432/inventory")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "Kafka 127.0.0.1:29092, PostgreSQL postgresql://postgres@127.0.0.1:25432/inventory" in err
    )


def test_an_override_is_named_as_given_on_the_command_line(capsys):
    settings = command_settings("loadgen", ("kafka_bootstrap",), kafka_bootstrap="k:1")
    assert settings.kafka_bootstrap == "k:1"
    assert "Kafka k:1 (command line)" in capsys.readouterr().err
