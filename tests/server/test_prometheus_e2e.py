"""The real Prometheus (Debian's ``prometheus``) scrapes a running ``llmgw serve`` and fires an
alert rule of deploy/prometheus/llmgw-rules.yml, unchanged, when the upstream fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import free_port

pytestmark = pytest.mark.slow

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "llmgw-rules.yml"


def _need_prometheus() -> str:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("prometheus (Debian package prometheus) is required under CI=true")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return prometheus


def _alerts(prom: str) -> dict[str, str]:
    try:
        data = httpx.get(f"{prom}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    except (httpx.TransportError, ValueError, KeyError):
        return {}
    return {a["labels"]["alertname"]: a["state"] for a in data}


def test_prometheus_scrapes_llmgw_and_fires_the_breaker_alert(
    serve_process: Any, upstream_factory: Any, key: Any, tmp_path: Path
) -> None:
    prometheus = _need_prometheus()
    up = upstream_factory(fail_rate=1.0)  # every chat call answers 500
    _proc, url = serve_process(up.url)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n  - job_name: llmgw\n"
        f"    static_configs: [{{targets: ['{url.removeprefix('http://')}']}}]\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        prom_proc = subprocess.Popen(
            [prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prom = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # Prometheus up and llmgw's target healthy
            try:
                targets = httpx.get(f"{prom}/api/v1/targets", timeout=2).json()["data"]
                if [t["health"] for t in targets["activeTargets"]] == ["up"]:
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(log.read_text()[-3000:])
        assert "LlmgwBreakerRefusing" not in _alerts(prom)  # healthy so far: nothing fires
        headers = {"Authorization": f"Bearer {key.secret}"}
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        statuses = set()
        with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                statuses.add(c.post("/v1/chat/completions", json=body).status_code)
                if _alerts(prom).get("LlmgwBreakerRefusing") == "firing":
                    break
                time.sleep(0.2)
        assert _alerts(prom).get("LlmgwBreakerRefusing") == "firing", (statuses, _alerts(prom))
        assert 200 not in statuses
    finally:
        prom_proc.terminate()
        prom_proc.wait(timeout=20)
