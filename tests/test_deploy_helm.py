"""deploy/helm/llmgw: ``helm lint`` and ``helm template`` by Helm's own Go SDK (helm-python-sdk,
no helm binary), every rendered manifest validated against the Kubernetes schemas
(kubernetes-validate, strict), for the default values, the production example and a small install
with the bundled PostgreSQL and Redis (docs/deployment.md#helm-chart)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from llmgw.config import Settings

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "llmgw"
VERSION = "1.30.0"
PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())
SMALL = {
    "postgresql": {"enabled": True, "password": "p@ss word"},
    "redisBundled": {"enabled": True},
}
CASES = {"default": {}, "production": PRODUCTION, "small": SMALL}
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # not in the Kubernetes schemas


def _render(values: dict[str, Any], *, upgrade: bool = False) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(CHART)
    out = chart.render(
        values, name="llmgw", namespace="llm", is_install=not upgrade, is_upgrade=upgrade
    )
    return [d for text in out.values() for d in yaml.safe_load_all(text) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_is_clean(case: str) -> None:
    report = helm_python.lint(CHART, CASES[case], strict=True, kube_version=f"v{VERSION}")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("case", CASES)
def test_rendered_manifests_match_the_kubernetes_schema(case: str) -> None:
    docs = _render(CASES[case])
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_lint_and_the_schema_catch_mistakes(tmp_path: Path) -> None:
    chart = tmp_path / "llmgw"
    shutil.copytree(CHART, chart)
    deployment = chart / "templates" / "deployment.yaml"
    deployment.write_text(
        deployment.read_text().replace("{{- end }}\n      containers:", "\n      containers:", 1)
    )
    report = helm_python.lint(chart, {}, strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])
    doc = _one(_render({}), "Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_kinds_per_values() -> None:
    kinds = {c: {d["kind"] for d in _render(v)} for c, v in CASES.items()}
    assert kinds["default"] == {"ConfigMap", "Deployment", "Job", "NetworkPolicy",
                                "PodDisruptionBudget", "Service", "ServiceAccount"}  # fmt: skip
    assert kinds["production"] >= kinds["default"] | {
        "Ingress",
        "HorizontalPodAutoscaler",
        "Role",
        "RoleBinding",
        "ServiceMonitor",
    }
    assert kinds["small"] >= kinds["default"] | {"StatefulSet", "Secret"}


@pytest.mark.parametrize("case", CASES)
def test_the_pods_drain_within_their_grace_period_and_probe_readyz(case: str) -> None:
    values = CASES[case]
    docs = _render(values)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    drain = float(env["LLMGW_SERVER__DRAIN_SECONDS"]["value"])
    assert drain == values.get("drainSeconds", 30)
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain + 5  # keep-alive linger
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["args"] == ["serve", "--no-migrate"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "secretKeyRef" in env["LLMGW_DATABASE__URL"]["valueFrom"]
    # the shipped TOML is a valid llmgw config, and it holds no secret
    toml = _one(docs, "ConfigMap")["data"]["config.toml"]
    Settings.model_validate(tomllib.loads(toml))
    assert "sk-" not in toml and "password" not in toml


def test_the_migration_hook_runs_before_the_pods() -> None:
    job = _one(_render({}), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    # the bundled database does not exist before install: the first run is post-install
    small = _one(_render(SMALL), "Job")
    assert small["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_production_scales_on_cpu_and_in_flight_requests_and_is_scraped() -> None:
    docs = _render(PRODUCTION)
    metrics = _one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert metrics[1]["pods"]["metric"]["name"] == "llmgw_requests_in_flight"
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service", "llmgw")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # discovery lists by label selector: a Role per watched namespace, never resourceNames
    # (Kubernetes cannot narrow list/watch by name: the listing would be refused, 403)
    role = _one(docs, "Role")
    assert role["metadata"]["namespace"] == "alerting"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
    ]
    binding = _one(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == "alerting"
    assert binding["subjects"][0]["name"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    config = tomllib.loads(_one(docs, "ConfigMap")["data"]["config.toml"])
    assert config["alerts"]["kubernetes"]["namespaces"] == ["alerting"]
    assert "Deployment" not in {d["kind"] for d in docs if "replicas" in d.get("spec", {})}


def test_the_bundled_database_url_is_quoted() -> None:
    secret = _one(_render(SMALL), "Secret")
    assert secret["stringData"]["database-url"] == (
        "postgresql://llmgw:p%40ss+word@llmgw-postgresql:5432/llmgw"
    )


def test_secret_discovery_rbac_defaults_to_the_release_namespace_and_covers_each_listed() -> None:
    [role] = [d for d in _render({"rbac": {"create": True}}) if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "llm"
    docs = _render({"rbac": {"create": True, "namespaces": ["alerting", "ops"]}})
    roles = [d for d in docs if d["kind"] == "Role"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert [r["metadata"]["namespace"] for r in roles] == ["alerting", "ops"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["alerting", "ops"]
    assert {b["subjects"][0]["namespace"] for b in bindings} == {"llm"}


@pytest.mark.parametrize("case", CASES)
def test_pods_mount_no_service_account_token_unless_secret_discovery_needs_it(case: str) -> None:
    """Only the gateway pods of an install with Secret discovery ([alerts.kubernetes] and its
    RBAC, as in the production example) get a token; the migration Job and the bundled databases
    never do."""
    values = CASES[case]
    docs = _render(values)
    config = tomllib.loads(values.get("config", ""))
    discovery = bool(config.get("alerts", {}).get("kubernetes", {}).get("enabled", False))
    assert values.get("rbac", {}).get("create", False) is discovery
    pods = [
        (d["kind"], d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}
    ]
    assert {kind for kind, _, _ in pods} >= {"Deployment", "Job"}
    for kind, name, pod in pods:
        expected = discovery and kind == "Deployment" and name == "llmgw"
        assert pod["automountServiceAccountToken"] is expected, (kind, name)
    assert _one(docs, "ServiceAccount")["automountServiceAccountToken"] is False


def test_with_secret_discovery_rbac_only_the_gateway_pods_mount_the_token() -> None:
    docs = _render({"rbac": {"create": True}})
    gateway = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert gateway["automountServiceAccountToken"] is True
    assert gateway["serviceAccountName"] == _one(docs, "ServiceAccount")["metadata"]["name"]
    [binding] = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["name"] == gateway["serviceAccountName"]
    job = _one(docs, "Job")["spec"]["template"]["spec"]
    assert job["automountServiceAccountToken"] is False
