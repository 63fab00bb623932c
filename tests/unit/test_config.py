import json

import pytest
from pydantic import ValidationError

from service.config import TOPIC_FIELDS, Settings, explain


def test_isolated_suffixes_the_group_and_every_topic_and_keeps_the_rest():
    base = Settings(grpc_port=5000)
    other = base.isolated("t1", topic_partitions=2)
    assert other.app_id == "inventory-service-t1"
    assert {getattr(other, f) for f in TOPIC_FIELDS} == {
        f"{getattr(base, f)}-t1" for f in TOPIC_FIELDS
    }
    assert (other.grpc_port, other.topic_partitions) == (5000, 2)


def test_as_env_round_trips_through_the_environment(monkeypatch):
    settings = Settings(admin_token_sha256=["ab" * 32], grpc_port=1234, allow_split=False)
    env = settings.as_env()
    assert json.loads(env["INVENTORY_ADMIN_TOKEN_SHA256"]) == ["ab" * 32]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_ttl_bounds_must_be_ordered():
    with pytest.raises(ValidationError):
        Settings(min_ttl_seconds=10, default_ttl_seconds=5)


# --- bad values: one line naming the variable, exit 2 -----------------------------------

NOT_A_POSITIVE_NUMBER = "-5"

BAD_VALUES: dict[str, str] = {
    "database_url": "mysql://inventory@localhost/inventory",
    "redis_url": "localhost:6379",
    "kafka_bootstrap": "localhost",
    "topic_order_created": "order created",
    "topic_order_cancelled": "",
    "topic_order_paid": "paid/orders",
    "topic_order_extended": "order extended",
    "topic_order_returned": "order returned",
    "topic_stock_changed": "stock changed",
    "topic_reservations": "x" * 250,
    "topic_stock_alerts": "stock alerts",
    "topic_dlq": "dlq!",
    "app_id": "inventory service",
    "kafka_fetch_max_wait_ms": "0",
    "grpc_host": "",
    "grpc_port": "70000",
    "http_host": "local host",
    "http_port": "http",
    "allow_split": "maybe",
    "default_warehouse_id": "",
    "max_id_length": "129",
    "max_message_bytes": "1000",
    "cache_enabled": "perhaps",
    "admin_token_sha256": "abc",
    "tls_cert_file": "/nonexistent/server.pem",
    "tls_key_file": "/nonexistent/server.key",
    "tls_client_ca_file": "/nonexistent/ca.pem",
    "role": "boss",
    "log_level": "LOUD",
    "log_format": "xml",
    "event_loop": "trio",
    "dev_data_dir": "<a file>",
    "dedup_window": "-5",
    "order_retention": "P-1D",
    "tombstone_retention": "0",
    "movement_retention": "a month",
}
NUMBERS = {
    name
    for name, field in Settings.model_fields.items()
    if field.annotation in (int, float) and name not in BAD_VALUES
}


def test_the_table_covers_every_setting():
    assert set(BAD_VALUES) | NUMBERS == set(Settings.model_fields)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_a_bad_value_is_one_line_naming_the_variable_and_exit_2(
    name, monkeypatch, capsys, tmp_path
):
    from service.cli import main

    value = BAD_VALUES.get(name, NOT_A_POSITIVE_NUMBER)
    if value == "<a file>":
        value = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(f"INVENTORY_{name.upper()}", value)

    assert main(["migrate"]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"inventory migrate: INVENTORY_{name.upper()}="), err
    assert "expected" in err, err


def test_the_admin_token_digests_must_be_a_json_list_of_hex_digests(monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN_SHA256", "abc")
    assert main(["check"]) == 2
    assert "JSON list of SHA-256 hex digests" in capsys.readouterr().err
    monkeypatch.setenv("INVENTORY_ADMIN_TOKEN_SHA256", '["abc"]')
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "INVENTORY_ADMIN_TOKEN_SHA256='[\"abc\"]'" in err
    assert "JSON list of SHA-256 hex digests" in err


def test_a_password_in_a_bad_url_is_not_printed():
    with pytest.raises(ValidationError) as failed:
        Settings(database_url="mysql://app:hunter2@db/inventory")
    line = explain(failed.value)
    assert "hunter2" not in line
    assert line.startswith("INVENTORY_DATABASE_URL='mysql://app:***@db/inventory': expected")


@pytest.mark.parametrize(
    ("value", "seconds"), [("60", 60), ("0.5", 0.5), ("P30D", 30 * 86400), ("PT1M", 60)]
)
def test_a_retention_is_seconds_or_iso_8601(monkeypatch, value, seconds):
    monkeypatch.setenv("INVENTORY_ORDER_RETENTION", value)
    assert Settings().order_retention.total_seconds() == seconds
    assert Settings().movement_retention is None  # kept forever by default


def test_ttl_bounds_out_of_order_name_the_three_variables():
    with pytest.raises(ValidationError) as failed:
        Settings(min_ttl_seconds=10, default_ttl_seconds=5)
    assert "INVENTORY_MIN_TTL_SECONDS <= INVENTORY_DEFAULT_TTL_SECONDS" in explain(failed.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:15432/inventory",
        "postgres://postgres@127.0.0.1:15432/inventory",
        "postgresql+asyncpg://postgres@127.0.0.1:15432/inventory",
    ],
)
def test_a_database_url_without_a_driver_gets_asyncpg(url):
    assert (
        Settings(database_url=url).database_url
        == "postgresql+asyncpg://postgres@127.0.0.1:15432/inventory"
    )


def test_admin_token_digests_are_normalized():
    digest = "AB" * 32
    assert Settings(admin_token_sha256=[f" {digest} "]).admin_token_sha256 == ["ab" * 32]
