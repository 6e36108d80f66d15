"""Operations: liveness, readiness, Prometheus metrics with bounded labels, request ids, access log."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmgw.config import DatabaseSettings, Settings
from llmgw.server import create_app
from llmgw.server.app import gateway_of

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "a b c"}]}


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


async def test_healthz_and_readyz(client: httpx.AsyncClient, app: Any) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    gateway_of(app).drain.begin(30)
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert "draining" in r.json()["problems"][0]
    assert (await client.get("/healthz")).status_code == 200  # still alive while draining


@pytest.mark.parametrize("case", ["unmigrated", "unreachable"])
async def test_readyz_reports_database_problems(settings: Settings, home: Path, case: str) -> None:
    if case == "unmigrated":
        db = DatabaseSettings(url=f"sqlite:///{home / 'empty.db'}")
        expected = "migrations"
    else:
        db = DatabaseSettings(url="postgresql://postgres@127.0.0.1:1/none", connect_timeout=1)
        expected = "unreachable"
    app = create_app(settings.model_copy(update={"database": db}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/readyz")
    assert r.status_code == 503
    assert expected in " ".join(r.json()["problems"])


async def test_metrics_count_requests_tokens_and_errors(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (await client.post("/v1/chat/completions", json=CHAT, headers=auth)).status_code == 200
    stream = {**CHAT, "stream": True}
    assert (await client.post("/v1/chat/completions", json=stream, headers=auth)).status_code == 200
    bad = {"model": "nope", "messages": CHAT["messages"]}
    assert (await client.post("/v1/chat/completions", json=bad, headers=auth)).status_code == 404
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = _samples(r.text)

    def value(name: str, **labels: str) -> float:
        return sum(v for n, lab, v in s if n == name and labels.items() <= lab.items())

    ok = {"route": "/v1/chat/completions", "provider": "openai", "model": "gpt-4o-mini"}
    assert value("llmgw_requests_total", status_class="2xx", **ok) == 2
    assert value("llmgw_requests_total", status_class="4xx", route="/v1/chat/completions") == 1
    assert value("llmgw_errors_total", error_type="model_not_found") == 1
    assert value("llmgw_tokens_total", provider="openai", kind="completion") > 0
    assert value("llmgw_time_to_first_token_seconds_count", provider="openai") == 1
    assert value("llmgw_upstream_duration_seconds_count", provider="openai") == 2
    assert value("llmgw_request_duration_seconds_count", route="/v1/chat/completions") == 3
    assert value("llmgw_requests_in_flight") == 1  # the /metrics request itself
    assert value("llmgw_usage_queued") >= 0  # the usage recorder's gauges are exported


async def test_metric_labels_never_carry_client_input(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    marker = f"zz{uuid.uuid4().hex}"
    await client.post(
        "/v1/chat/completions", json={"model": marker, "messages": CHAT["messages"]}, headers=auth
    )
    await client.post(
        "/v1/chat/completions",
        json={"model": f"openai/{marker}", "messages": CHAT["messages"]},
        headers=auth,
    )
    await client.get(f"/v1/{marker}", headers=auth)
    await client.get(f"/{marker}/x?{marker}=1")
    text = (await client.get("/metrics")).text
    assert marker not in text
    routes = {lab.get("route") for _, lab, _ in _samples(text) if "route" in lab}
    assert routes <= {"/v1/chat/completions", "/metrics", "other"}


async def test_request_ids_and_one_access_log_line(
    client: httpx.AsyncClient, auth: dict[str, str], key: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="llmgw.access")
    r = await client.post(
        "/v1/chat/completions", json=CHAT, headers={**auth, "x-request-id": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    bad_id: dict[str, Any] = {**auth, "x-request-id": ("bad id\u00e9" * 30).encode()}
    r2 = await client.post("/v1/chat/completions", json=CHAT, headers=bad_id)
    generated = r2.headers["x-request-id"]
    assert generated.startswith("req_") and len(generated) == 28
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "llmgw.access"]
    assert len(lines) == 2
    first = lines[0]
    assert first["client_request_id"] == "abc-123"
    assert first["request_id"].startswith("req_")
    assert (first["method"], first["path"], first["status"]) == (
        "POST",
        "/v1/chat/completions",
        200,
    )
    assert (first["model"], first["provider"], first["key"]) == (
        "gpt-4o-mini",
        "openai",
        key.info.prefix,
    )
    assert first["latency_ms"] > 0
    assert lines[1]["request_id"] == generated and lines[1]["client_request_id"] is None
    assert key.secret not in caplog.text


async def test_usage_record_carries_the_request_id(
    client: httpx.AsyncClient, auth: dict[str, str], app: Any, flushed_usage: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="llmgw.access")
    await client.post("/v1/chat/completions", json=CHAT, headers={**auth, "x-request-id": "mine-1"})
    (row,) = await flushed_usage(app)
    line = json.loads(next(r.getMessage() for r in caplog.records if r.name == "llmgw.access"))
    assert row["request_id"] == line["request_id"]
    assert "mine-1" in str(row["metadata"])


async def test_metrics_token_guards_metrics_when_set(
    make_settings: Any, upstream: Any, test_engine: Any
) -> None:
    settings = make_settings(upstream.url, metrics_token="scrape-secret-123")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://llmgw") as c:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "scrape-secret-123"},
            ):
                r = await c.get("/metrics", headers=headers)
                assert r.status_code == 401
                assert r.json()["error"]["type"] == "authentication_error"
                assert "scrape-secret-123" not in r.text
            r = await c.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert r.status_code == 200 and "llmgw_requests_total" in r.text
            assert (await c.get("/healthz")).status_code == 200  # probes stay open


async def test_upstream_metrics_are_per_version_with_a_bounded_label(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """Issue 13 "metrics by version": ``:rc`` and no version are two series; a version the
    configuration does not know is ``other``, never the client's text."""
    marker = f"v{uuid.uuid4().hex}"
    for model in ("openai/gpt-4o-mini", "openai/gpt-4o-mini:rc", f"openai/gpt-4o-mini:{marker}"):
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": model}, headers=auth)
        assert r.status_code == 200, r.text
    text = (await client.get("/metrics")).text
    s = _samples(text)

    def value(name: str, **labels: str) -> float:
        return sum(v for n, lab, v in s if n == name and labels.items() <= lab.items())

    count = "llmgw_upstream_duration_seconds_count"
    assert value(count, provider="openai", model="gpt-4o-mini", version="none") == 1
    assert value(count, provider="openai", model="gpt-4o-mini", version="rc") == 1
    assert value(count, provider="openai", model="gpt-4o-mini", version="other") == 1
    assert value("llmgw_tokens_total", version="rc", kind="prompt") > 0
    assert marker not in text
