"""deploy/kubernetes: every manifest validates against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), and the settings that make a rolling update safe hold."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from llmgw.config import Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
VERSION = "1.30.0"  # the oldest release with the preStop sleep action used here


def _docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def _one(kind: str) -> dict[str, Any]:
    [doc] = [d for d in _docs() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("doc", _docs(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_schema_check_rejects_a_misspelled_field() -> None:
    doc = _one("Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_expected_resources_are_there() -> None:
    kinds = {d["kind"] for d in _docs()}
    assert kinds >= {"Deployment", "Service", "ConfigMap", "Job", "ServiceAccount",
                     "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"}  # fmt: skip


def test_the_deployment_drains_within_its_grace_period() -> None:
    toml = tomllib.loads(_one("ConfigMap")["data"]["config.toml"])
    settings = Settings.model_validate(toml)  # the shipped config is a valid llmgw config
    pod = _one("Deployment")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    keep_alive_linger = 5  # uvicorn's keep-alive timeout (docs/deployment.md#rolling-restart)
    needed = pre_stop + settings.server.drain_seconds + keep_alive_linger
    assert pod["terminationGracePeriodSeconds"] > needed
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    strategy = _one("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def test_the_pod_runs_read_only_as_the_image_user_with_llmgw_home_writable() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # USER in deploy/Dockerfile
    assert "USER 10001:10001" in (ROOT / "deploy" / "Dockerfile").read_text()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/lib/llmgw", "/tmp"} <= mounts
    env = {e["name"] for e in c["env"]}
    assert {"LLMGW_DATABASE__URL", "LLMGW_REDIS_URL"} <= env
    assert c["args"] == ["serve", "--no-migrate"]
    assert _one("Job")["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


def test_no_pod_gets_a_service_account_token_it_does_not_use() -> None:
    """llmgw calls the Kubernetes API only for Secret discovery ([alerts.kubernetes], off here):
    neither the gateway pods nor the migration Job mount a token, and the ServiceAccount does not
    hand one out by default either (docs/deployment.md#kubernetes)."""
    toml = tomllib.loads(_one("ConfigMap")["data"]["config.toml"])
    assert not Settings.model_validate(toml).alerts.kubernetes.enabled
    for kind in ("Deployment", "Job"):
        pod = _one(kind)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, kind
    assert _one("ServiceAccount")["automountServiceAccountToken"] is False
