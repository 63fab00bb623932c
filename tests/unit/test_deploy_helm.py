"""The Helm chart, checked as data (no helm binary here).

Templates are made YAML by a small stripper of Go template actions; values references are
resolved against values.yaml; env var names and config keys against Settings.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm/inventory-service"
TEMPLATES = CHART / "templates"

ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
SENTINEL = "\x00"
PLACEHOLDER = "TEMPLATED"
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
ENV_NAME = re.compile(r"\bINVENTORY_[A-Z0-9_]+\b")


def strip_go_template(text: str) -> str:
    """YAML skeleton of a template.

    A line made only of actions (`{{- if ... }}`, `{{- end }}`, `{{- include ... | nindent 4 }}`,
    a multi-line `{{/* comment */}}`) is removed: it is control flow, or output whose shape the
    file cannot show. An action inside a line (`replicas: {{ .Values.api.replicas }}`) becomes a
    placeholder scalar. Both branches of an if/else survive, which YAML accepts.
    """
    marked = ACTION.sub(SENTINEL, text)
    lines = []
    for line in marked.splitlines():
        if SENTINEL in line and not line.replace(SENTINEL, "").strip():
            continue
        lines.append(re.sub(f"{SENTINEL}+", PLACEHOLDER, line))
    return "\n".join(lines) + "\n"


def manifests(name: str) -> list[dict[str, Any]]:
    docs = yaml.safe_load_all(strip_go_template((TEMPLATES / name).read_text()))
    return [doc for doc in docs if doc is not None]


def all_manifests() -> list[dict[str, Any]]:
    return [doc for path in yaml_templates() for doc in manifests(path.name)]


def yaml_templates() -> list[Path]:
    return sorted(TEMPLATES.glob("*.yaml"))


def load_values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def setting_env_names() -> dict[str, str]:
    return {f"INVENTORY_{name.upper()}": name for name in Settings.model_fields}


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in all_manifests() if doc["kind"] == kind]


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        doc
        for doc in by_kind("Deployment")
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def leaf_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            paths += leaf_paths(value, (*prefix, key))
        else:
            paths.append((*prefix, key))
    return paths


# --- the stripper itself ----------------------------------------------------------------------


def test_stripper_removes_action_lines_and_replaces_inline_actions() -> None:
    template = (
        '{{- if .Values.x }}\nkind: A\nmetadata:\n  labels:\n    {{- include "l" . | nindent 4 }}\n'
        "    extra: {{ .Values.y | quote }}\n{{/*\na comment\n*/}}\n"
        'spec: ["a", "{{ .Values.z }}"]\nname: {{ .Values.a }}-{{ .Values.b }}\n{{- end }}\n'
    )
    assert yaml.safe_load(strip_go_template(template)) == {
        "kind": "A",
        "metadata": {"labels": {"extra": PLACEHOLDER}},
        "spec": ["a", PLACEHOLDER],
        "name": f"{PLACEHOLDER}-{PLACEHOLDER}",
    }


# --- Chart.yaml ------------------------------------------------------------------------------


def test_chart_yaml_fields() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == CHART.name == "inventory-service"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[-+].+)?", chart["version"])
    assert chart["description"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


# --- templates -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_templates(), ids=lambda p: p.name)
def test_template_is_valid_yaml_once_actions_are_stripped(path: Path) -> None:
    docs = manifests(path.name)
    assert docs, f"{path.name} renders no manifest"
    for doc in docs:
        assert isinstance(doc, dict)
        assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: {doc}"
        assert doc["metadata"]["name"]


def test_every_values_reference_exists_in_values_yaml() -> None:
    values = load_values()
    missing = []
    for path in TEMPLATES.iterdir():
        for match in VALUES_REF.finditer(path.read_text()):
            node: Any = values
            for key in match.group(1).lstrip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{path.name}: .Values{match.group(1)}")
                    break
                node = node[key]
    assert not missing


def test_every_value_is_used_by_a_template() -> None:
    refs = {
        tuple(match.group(1).lstrip(".").split("."))
        for path in TEMPLATES.iterdir()
        for match in VALUES_REF.finditer(path.read_text())
    }
    unused = [
        ".".join(leaf)
        for leaf in leaf_paths(load_values())
        if not any(leaf[: len(ref)] == ref for ref in refs)
    ]
    assert not unused


def test_the_chart_has_every_resource_the_issue_asks_for() -> None:
    kinds = [doc["kind"] for doc in all_manifests()]
    for kind in (
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PrometheusRule",
        "Job",
        "ServiceAccount",
    ):
        assert kind in kinds
    assert kinds.count("Deployment") == 2
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"].endswith("-api")
    pdbs = {doc["metadata"]["name"].rsplit("-", 1)[-1] for doc in by_kind("PodDisruptionBudget")}
    assert pdbs == {"api", "worker"}


def test_deployments_run_the_roles_with_probes_on_the_http_port() -> None:
    http = Settings.model_fields["http_port"].default
    grpc = Settings.model_fields["grpc_port"].default
    for component, ports in (("api", {"grpc": grpc, "http": http}), ("worker", {"http": http})):
        spec = deployment(component)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["serve", "--role", component]
        named = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert named == ports
        probes = {
            kind: container[f"{kind}Probe"]["httpGet"]
            for kind in ("startup", "liveness", "readiness")
        }
        assert probes["liveness"]["path"] == "/health"
        assert probes["startup"]["path"] == "/health"
        assert probes["readiness"]["path"] == "/readiness"
        for probe in probes.values():
            port = probe["port"]
            assert named.get(port, port) == http
        assert "resources" in container and "securityContext" in container
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert {"/tmp", "/var/lib/inventory"} <= mounts  # writable dirs on a read-only root


def test_services_expose_grpc_and_http() -> None:
    values = load_values()
    assert values["service"]["grpcPort"] == Settings.model_fields["grpc_port"].default
    assert values["service"]["httpPort"] == Settings.model_fields["http_port"].default
    services = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in by_kind("Service")
    }
    api_ports = {port["name"]: port["targetPort"] for port in services["api"]["spec"]["ports"]}
    assert api_ports == {"grpc": "grpc", "http": "http"}
    assert services["worker"]["spec"]["ports"][0]["targetPort"] == "http"


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    (job,) = by_kind("Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # the Secret it reads is a hook too, created before it (lower weight)
    (hook_secret,) = [
        doc for doc in by_kind("Secret") if "helm.sh/hook" in doc["metadata"].get("annotations", {})
    ]
    weight = int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert weight < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_every_env_var_in_the_templates_is_a_setting() -> None:
    known = setting_env_names()
    names = {name for path in TEMPLATES.iterdir() for name in ENV_NAME.findall(path.read_text())}
    assert names, "the templates set INVENTORY_* variables"
    assert not sorted(names - known.keys())
    for secret_key in ("INVENTORY_DATABASE_URL", "INVENTORY_ADMIN_TOKEN_SHA256"):
        assert secret_key in (TEMPLATES / "_helpers.tpl").read_text()


@pytest.mark.parametrize("section", ["config", "api.config", "worker.config"])
def test_config_keys_are_settings_and_parse(section: str, monkeypatch: pytest.MonkeyPatch) -> None:
    node: Any = load_values()
    for key in section.split("."):
        node = node[key]
    unknown = sorted(set(node) - Settings.model_fields.keys())
    assert not unknown, f"{section} has keys that are no Settings field: {unknown}"
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    for key, value in node.items():
        # as the chart renders it: JSON for lists and maps, true/false, plain numbers
        text = json.dumps(value) if isinstance(value, list | dict | bool) else str(value)
        monkeypatch.setenv(f"INVENTORY_{key.upper()}", text)
    settings = Settings()
    for key, value in node.items():
        assert getattr(settings, key) == value, key


def test_config_keeps_the_settings_topic_names() -> None:
    config = load_values()["config"]
    for name, field in Settings.model_fields.items():
        if name.startswith("topic_") and name in config:
            assert config[name] == field.default, name


def test_worker_replicas_do_not_exceed_partitions() -> None:
    values = load_values()
    assert values["worker"]["replicas"] <= values["config"]["topic_partitions"]
    assert values["config"]["topic_partitions"] == Settings.model_fields["topic_partitions"].default
    # and the chart refuses to render a bad combination
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    guard = r"gt \(int \.Values\.worker\.replicas\) \(int \.Values\.config\.topic_partitions\)"
    assert re.search(guard, helpers)
    assert 'include "inventory.validate"' in (TEMPLATES / "deployment-worker.yaml").read_text()


def test_pods_run_as_the_image_user_on_a_read_only_root() -> None:
    values = load_values()
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\d+)", dockerfile, re.MULTILINE)[-1]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert str(values["podSecurityContext"]["runAsUser"]) == user
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["allowPrivilegeEscalation"] is False


def test_chart_files_are_copies_of_deploy_files() -> None:
    assert (CHART / "files/alerts.yml").read_text() == (
        ROOT / "deploy/prometheus/alerts.yml"
    ).read_text(), "copy deploy/prometheus/alerts.yml to helm/inventory-service/files/"
    assert (CHART / "files/dashboard.json").read_text() == (
        ROOT / "deploy/grafana/dashboards/inventory.json"
    ).read_text(), "copy deploy/grafana/dashboards/inventory.json to helm/inventory-service/files/"


def test_readme_shows_install_and_upgrade() -> None:
    readme = (ROOT / "helm/README.md").read_text()
    assert "helm install" in readme or "helm upgrade --install" in readme
    assert "helm upgrade" in readme
