import json

import pytest
from pydantic import ValidationError

from service.config import TOPIC_FIELDS, Settings


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
