"""deploy/prometheus: the rules load (``promtool check rules``), their unit tests pass (``promtool
test rules``), the unit tests can fail, and every series the rules read is one llmgw serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "llmgw-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "llmgw-rules.test.yml"


def _need_promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool (Debian package prometheus) is required under CI=true")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return promtool


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_need_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules() -> None:
    proc = _promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """A rule file whose error-ratio threshold was raised tenfold fails the same unit tests."""
    text = RULES.read_text()
    assert "job:llmgw_chat_errors:ratio_rate5m > 0.05" in text
    (tmp_path / RULES.name).write_text(text.replace("ratio_rate5m > 0.05", "ratio_rate5m > 0.5"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    proc = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "LlmgwChatErrorRatioHigh" in proc.stdout + proc.stderr


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_has_a_runbook_section() -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 10
    for rule in alerts:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/deployment.md has no runbook heading for {rule['alert']}"


async def _served(client: Any) -> set[str]:
    """Series names from the live /metrics exposition (``# TYPE`` lines), not a hand-kept list."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    served: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M):
        base = name.removesuffix("_total")
        served |= {
            "counter": {f"{base}_total"},
            "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
        }.get(kind, {name})
    return served


def _series(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not series names
    return set(re.findall(r"(?<![:\w])(llmgw_[a-z_]+)", expr))


async def test_every_series_in_the_rules_is_served_on_metrics(client: Any) -> None:
    used: set[str] = set().union(*(_series(rule["expr"]) for rule in _rules()))
    assert used, "the rules read no llmgw series"
    served = await _served(client)
    assert used <= served, f"not served on /metrics: {sorted(used - served)}"


DASHBOARD = ROOT / "deploy" / "grafana" / "llmgw-overview.json"


def _targets() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def test_the_dashboard_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"] for v in dash["templating"]["list"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for p in dash["panels"]:
        assert (
            set(p["gridPos"]) == {"h", "w", "x", "y"}
            and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        )
        assert p["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
        assert p["datasource"]["uid"].strip("${}") in variables
        assert p["targets"] and all(t["refId"] and t["expr"] for t in p["targets"])
        assert all(v in variables for v in re.findall(r"\$(\w+)", json.dumps(p["targets"])))


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule, ``$job`` filled in)."""
    rules = [
        {"record": f"dashboard:query{i}", "expr": e.replace("$job", "llmgw")}
        for i, e in enumerate(_targets())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "b", "rules": [
        {"record": "x:y", "expr": "sum by (job (rate(llmgw_requests_total[5m]))"}]}]}))  # fmt: skip
    assert _promtool("check", "rules", str(bad), cwd=tmp_path).returncode != 0


async def test_every_dashboard_query_reads_served_series_or_recorded_rules(client: Any) -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    for expr in _targets():
        names = set(re.findall(r"(?<![\w:])([a-z_]+:[a-z0-9_:]+)", re.sub(r'"[^"]*"', '""', expr)))
        assert names <= recorded, f"not a recording rule in llmgw-rules.yml: {names - recorded}"
    used: set[str] = set().union(*(_series(e) for e in _targets()))
    served = await _served(client)
    assert used <= served, f"not served on /metrics: {sorted(used - served)}"
