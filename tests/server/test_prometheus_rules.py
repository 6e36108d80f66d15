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

import httpx
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
    docs = (ROOT / "docs" / "operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 10
    for rule in alerts:
        path, anchor = rule["annotations"]["runbook"].split("#", 1)
        assert path == "docs/operations.md"
        assert anchor == rule["alert"].lower()
        assert anchor in headings, f"docs/operations.md has no runbook heading for {rule['alert']}"


async def _served(client: Any) -> set[str]:
    """Series names from the live /metrics exposition (``# TYPE`` lines), not a hand-kept list."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    return _served_from(r.text)


def _served_from(text: str) -> set[str]:
    served: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        base = name.removesuffix("_total")
        served |= {
            "counter": {f"{base}_total"},
            "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
        }.get(kind, {name})
    return served


def _series(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not series names
    return set(re.findall(r"(?<![:\w])(llmgw_[a-z_]+)", expr))


# Served only by ``llmgw serve`` with ``[server] ssl_certfile`` (tests/server/test_tls_serve.py
# checks them there).
TLS_SERIES = {"llmgw_tls_certificate_expiry_timestamp_seconds", "llmgw_tls_reloads_total"}


async def test_every_series_in_the_rules_is_served_on_metrics(client: Any) -> None:
    used: set[str] = set().union(*(_series(rule["expr"]) for rule in _rules()))
    assert used, "the rules read no llmgw series"
    served = await _served(client)
    assert used - TLS_SERIES <= served, f"not served on /metrics: {sorted(used - served)}"
    assert used >= TLS_SERIES


DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
# Families llmgw serves only once something happened: the test cannot make them appear cheaply.
CONDITIONAL = {"llmgw_alert_classify_seconds": "after the first classification call"}
# Values for the dashboards' variables when a query is checked outside Grafana.
_FILL = {"$job": "llmgw", "$provider": ".*", "$model": ".*", "$__range": "1h"}


def _fill(expr: str) -> str:
    for name, value in sorted(_FILL.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    return expr


def _targets(path: Path) -> list[str]:
    """Every query of a dashboard: the panels' and the query variables' (``label_values``)."""
    dash = json.loads(path.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
            assert inner, v["query"]
            exprs.append(inner.group(1))
    return exprs


def test_the_four_dashboards_are_there() -> None:
    assert {p.stem for p in DASHBOARDS} >= {
        "llmgw-overview",
        "llmgw-providers",
        "llmgw-usage",
        "llmgw-alerts",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_the_dashboard_is_well_formed(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"] for v in dash["templating"]["list"]}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for p in dash["panels"]:
        assert (
            set(p["gridPos"]) == {"h", "w", "x", "y"}
            and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        )
        assert p["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
        assert p["datasource"]["uid"].strip("${}") in variables
        assert p["targets"] and all(t["refId"] and t["expr"] for t in p["targets"])
        used = re.findall(r"\$(\w+)", json.dumps(p["targets"]))
        assert all(v in variables or v.startswith("__") for v in used), used
        assert all(f"${v}" in _FILL for v in used), f"no test value for {used}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_query_parses(path: Path, tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule, the variables filled in)."""
    rules = [
        {"record": f"dashboard:query{i}", "expr": _fill(e)} for i, e in enumerate(_targets(path))
    ]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _promtool("check", "rules", str(rules_file), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "b", "rules": [
        {"record": "x:y", "expr": "sum by (job (rate(llmgw_requests_total[5m]))"}]}]}))  # fmt: skip
    assert _promtool("check", "rules", str(bad), cwd=tmp_path).returncode != 0


def _check_served(exprs: list[str], served: set[str], name: str) -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    for expr in exprs:
        names = set(re.findall(r"(?<![\w:])([a-z_]+:[a-z0-9_:]+)", re.sub(r'"[^"]*"', '""', expr)))
        assert names <= recorded, f"not a recording rule in llmgw-rules.yml: {names - recorded}"
    used: set[str] = set().union(*(_series(e) for e in exprs))
    missing = used - served - set(CONDITIONAL)
    assert not missing, f"{name}: not served on /metrics: {sorted(missing)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
async def test_every_dashboard_query_reads_served_series_or_recorded_rules(
    path: Path, client: Any
) -> None:
    _check_served(_targets(path), await _served(client), path.name)


def test_every_dashboard_series_is_on_the_metrics_of_a_running_serve(
    serve_process: Any, emulator: Any, key: Any
) -> None:
    """A real ``llmgw serve`` (alert worker running) after one chat: every series the four
    dashboards read is on its /metrics, and a misspelt one would not be."""
    _, url = serve_process(emulator.url)
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=30,
    )
    assert r.status_code == 200
    text = httpx.get(f"{url}/metrics", timeout=10).text
    served = _served_from(text)
    for path in DASHBOARDS:
        _check_served(_targets(path), served, path.name)
    with pytest.raises(AssertionError, match="llmgw_tokens_totl"):
        _check_served(["sum(rate(llmgw_tokens_totl[5m]))"], served, "misspelt")
    for name in CONDITIONAL:  # named in the code that serves it, with its conditions
        assert name in (ROOT / "server" / "alerting.py").read_text()
