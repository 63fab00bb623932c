"""docker-compose.yml and the Prometheus/Grafana files it mounts, checked as data.

No Docker engine runs here: the file is loaded as YAML and compared with the service's own
Settings (field names, defaults, topic names and partition count) and with the other files.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "inventory-api", "inventory-worker")
# ${NAME:-default} interpolation of compose: the tests see the default
INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}")


def setting_env_names() -> dict[str, str]:
    return {f"INVENTORY_{name.upper()}": name for name in Settings.model_fields}


def default(name: str) -> Any:
    return Settings.model_fields[name].default


def interpolate(value: object) -> str:
    return INTERPOLATION.sub(lambda m: m.group(1) or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value form
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(value) for key, value in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_every_service_the_app_needs_is_there(services: dict[str, dict[str, Any]]) -> None:
    needed = {
        "kafka",
        "kafka-init",
        "postgres",
        "redis",
        "migrate",
        "inventory-api",
        "inventory-worker",
        "prometheus",
        "grafana",
    }
    assert needed <= services.keys()
    assert not any("zookeeper" in name for name in services)


def test_kafka_is_apache_kafka_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker
    assert "healthcheck" in kafka


def test_init_creates_every_topic_with_the_settings_partition_count(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = " ".join(command_of(init))
    topics = {
        default(name)
        for name in Settings.model_fields
        if name.startswith("topic_") and name != "topic_partitions"
    }
    loop = re.search(r"for topic in ([^;]+);", script)
    assert loop is not None, "kafka-init creates the topics in a `for topic in ...;` loop"
    assert set(loop.group(1).split()) == topics
    assert re.findall(r"--partitions (\d+)", script) == [str(default("topic_partitions"))]
    assert "--if-not-exists" in script


def test_app_containers_run_the_right_commands(services: dict[str, dict[str, Any]]) -> None:
    assert command_of(services["migrate"]) == ["migrate"]
    assert command_of(services["inventory-api"]) == ["serve", "--role", "api"]
    assert command_of(services["inventory-worker"]) == ["serve", "--role", "worker"]
    for name in APP_SERVICES:
        assert services[name]["build"]["context"] == "."
        assert services[name]["image"] == services["migrate"]["image"]


def test_roles_start_after_migrations_and_topics(services: dict[str, dict[str, Any]]) -> None:
    for name in ("inventory-api", "inventory-worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
    worker = services["inventory-worker"]["depends_on"]
    assert worker["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_env_vars_are_real_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(services[name])
    known = setting_env_names()
    unknown = sorted(key for key in env if key not in known)
    assert not unknown, f"{name} sets variables that are no Settings field: {unknown}"
    assert all(key.startswith("INVENTORY_") for key in env)
    # and the values parse as Settings does it in the container: from the environment
    for key in list(known):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.topic_partitions == default("topic_partitions")


def test_connection_urls_point_at_the_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    env = env_of(services["inventory-worker"])
    assert urlsplit(env["INVENTORY_DATABASE_URL"]).hostname == "postgres"
    assert env["INVENTORY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert urlsplit(env["INVENTORY_REDIS_URL"]).hostname == "redis"
    bootstrap = env["INVENTORY_KAFKA_BOOTSTRAP"]
    assert bootstrap.split(":")[0] == "kafka"
    advertised = env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"://{bootstrap}" in advertised
    postgres = env_of(services["postgres"])
    url = urlsplit(env["INVENTORY_DATABASE_URL"])
    assert (url.username, url.password, url.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )


def test_ports_match_the_settings_defaults(services: dict[str, dict[str, Any]]) -> None:
    grpc, http = default("grpc_port"), default("http_port")
    assert (grpc, http) == (4004, 4002)
    for name in APP_SERVICES:
        env = env_of(services[name])
        assert int(env.get("INVENTORY_GRPC_PORT", grpc)) == grpc
        assert int(env.get("INVENTORY_HTTP_PORT", http)) == http

    def container_ports(name: str) -> set[int]:
        return {int(str(p).split("#")[0].strip().split(":")[-1]) for p in services[name]["ports"]}

    assert container_ports("inventory-api") == {grpc, http}
    assert container_ports("inventory-worker") == {http}


def test_partition_setting_matches_created_topics(services: dict[str, dict[str, Any]]) -> None:
    script = " ".join(command_of(services["kafka-init"]))
    partitions = int(re.findall(r"--partitions (\d+)", script)[0])
    for name in APP_SERVICES:
        env = env_of(services[name])
        assert int(env.get("INVENTORY_TOPIC_PARTITIONS", partitions)) == partitions


def test_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_both_roles(services: dict[str, dict[str, Any]]) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    port = default("http_port")
    assert {f"inventory-api:{port}", f"inventory-worker:{port}"} <= targets
    assert all(target.split(":")[0] in services for target in targets)
    rule_files = config["rule_files"]
    mounts = {str(v).split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(rule_files) <= mounts


def test_grafana_provisions_datasource_and_dashboard(services: dict[str, dict[str, Any]]) -> None:
    provisioning = ROOT / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert urlsplit(source["url"]).hostname == "prometheus"
    providers = yaml.safe_load((provisioning / "dashboards/inventory.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = dict(str(v).split(":")[1::-1] for v in services["grafana"]["volumes"])
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert (ROOT / "deploy/grafana/dashboards/inventory.json").is_file()
