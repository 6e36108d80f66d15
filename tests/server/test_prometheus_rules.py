"""deploy/prometheus: the rules load (``promtool check rules``), their unit tests pass (``promtool
test rules``), the unit tests can fail, and every series the rules read is one llmgw serves."""

from __future__ import annotations

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


async def test_every_series_in_the_rules_is_served_on_metrics(client: Any) -> None:
    """The names come from the live /metrics exposition (``# TYPE`` lines), not a hand-kept list."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    served: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M):
        base = name.removesuffix("_total")
        served |= {
            "counter": {f"{base}_total"},
            "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
        }.get(kind, {name})
    used = set()
    for rule in _rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not series names
        used |= set(re.findall(r"(?<![:\w])(llmgw_[a-z_]+)", expr))
    assert used, "the rules read no llmgw series"
    assert used <= served, f"not served on /metrics: {sorted(used - served)}"
