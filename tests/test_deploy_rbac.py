"""deploy/kubernetes/rbac-secrets.yaml: the Secret discovery's RBAC validates against the
Kubernetes schemas (tests/test_deploy_kubernetes.py runs kubernetes-validate on every manifest)
and grants get/list/watch on secrets only, per watched namespace, to llmgw's ServiceAccount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from llmgw.config import KubernetesDiscoverySettings

K8S = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def test_rbac_grants_read_of_secrets_only_in_each_watched_namespace() -> None:
    docs = _docs("rbac-secrets.yaml")
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    roles = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"
    }
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert roles and not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for role in roles.values():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}
        ]
    [deployment] = _docs("deployment.yaml")
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings} == set(roles)
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert [(s["kind"], s["name"]) for s in b["subjects"]] == [("ServiceAccount", account)]
    # The namespaces granted are the ones a matching [alerts.kubernetes] config watches.
    namespaces = sorted({ns for ns, _ in roles})
    assert KubernetesDiscoverySettings(enabled=True, namespaces=namespaces).namespaces == [
        "alerting"
    ]
    assert "alerting" in {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}


def test_the_schema_check_catches_a_wrong_rbac_field() -> None:
    import pytest

    role = next(d for d in _docs("rbac-secrets.yaml") if d["kind"] == "Role")
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, "1.30.0", strict=True)
