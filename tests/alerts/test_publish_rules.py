"""Publishing without a peer: the retry policy's mapping of real HTTP answers, the live target
set (config and discovered, refused data, name clashes), routing rules and the templates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from llmgw.alerts.modes import present
from llmgw.alerts.publishers.base import TokenBucket, jittered, outcome_of
from llmgw.alerts.publishers.step import dedup_key
from llmgw.alerts.publishers.targets import TargetSet
from llmgw.alerts.publishers.templates import pagerduty_event, rootly_attributes, slack_message
from llmgw.config import PublishRoute, PublishTarget

PD_KEY = "0123456789abcdef0123456789abcdef"


def _resp(code: int, text: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, text=text, headers=headers or {})


@pytest.mark.parametrize(
    ("code", "headers", "kind", "after"),
    [
        (202, {}, "sent", None),
        (429, {"Retry-After": "7"}, "retry", 7.0),
        (429, {}, "retry", None),
        (500, {}, "retry", None),
        (503, {"Retry-After": "2"}, "retry", 2.0),
        (400, {}, "failed", None),
        (401, {}, "failed", None),
        (403, {}, "failed", None),
        (422, {}, "failed", None),
        (404, {}, "disable", None),
        (410, {}, "disable", None),
    ],
)
def test_retry_policy(code: int, headers: dict[str, str], kind: str, after: float | None) -> None:
    out = outcome_of(_resp(code, "no_service", headers))
    assert (out.kind, out.retry_after) == (kind, after)
    if kind != "sent":
        assert out.error is not None and out.error.startswith(f"HTTP {code}")


def test_backoff_is_jittered_doubling_and_capped() -> None:
    assert jittered(2, 300, 1, rng=lambda: 0.0) == 1.0
    assert jittered(2, 300, 1, rng=lambda: 1.0) == 2.0
    assert jittered(2, 300, 3, rng=lambda: 1.0) == 8.0
    assert jittered(2, 300, 30, rng=lambda: 1.0) == 300.0


def test_token_bucket_spaces_requests() -> None:
    t = [0.0]
    b = TokenBucket(1.0, 1.0, clock=lambda: t[0])
    assert b.reserve() == 0.0
    assert b.reserve() == pytest.approx(1.0)
    t[0] = 5.0
    assert b.reserve() == 0.0


def _pd(name: str, **kw: Any) -> dict[str, str]:
    return {"type": "pagerduty", "name": name, "routing_key": PD_KEY, **kw}


def test_discovered_targets_replace_refuse_and_lose_name_clashes() -> None:
    cfg = PublishTarget.model_validate(_pd("pd-main", events_url="http://cfg/v2/enqueue"))
    ts = TargetSet([cfg])
    refused = ts.set_discovered_targets(
        "kubernetes",
        {
            "alerting/pd-main": _pd("pd-main", events_url="http://secret/v2/enqueue"),
            "alerting/slack": {"type": "slack", "name": "slack-db", "bot_token": "xoxb-s3cret",
                               "channel": "C1", "match_labels": '{"team": "db"}'},
            "alerting/bad": {"type": "slack", "name": "broken", "bot_token": "xoxb-hidden"},
        },
    )  # fmt: skip
    assert set(refused) == {"alerting/bad"}
    assert "xoxb-hidden" not in repr(refused) and "xoxb-hidden" not in repr(ts.problems)
    by = {t.name: t for t in ts.all()}
    assert set(by) == {"pd-main", "slack-db"}
    assert by["pd-main"].source == "config"  # config wins a clash
    assert by["pd-main"].target.events_url == "http://cfg/v2/enqueue"
    assert by["slack-db"].source == "kubernetes:alerting/slack"
    assert by["slack-db"].target.match_labels == {"team": "db"}
    described = by["slack-db"].describe()
    assert "xoxb" not in repr(described) and described["channel"] == "C1"
    ts.disable(by["slack-db"], "HTTP 404: channel_not_found")
    # unchanged data keeps its state; changed data is a new target (re-enabled)
    ts.set_discovered_targets("kubernetes", {"alerting/slack": {
        "type": "slack", "name": "slack-db", "bot_token": "xoxb-s3cret", "channel": "C1",
        "match_labels": '{"team": "db"}'}})  # fmt: skip
    assert ts.get("slack-db") is not None and ts.get("slack-db").disabled  # type: ignore[union-attr]
    ts.set_discovered_targets("kubernetes", {"alerting/slack": {
        "type": "slack", "name": "slack-db", "bot_token": "xoxb-s3cret", "channel": "C2"}})  # fmt: skip
    assert ts.get("slack-db").disabled is None  # type: ignore[union-attr]
    ts.set_discovered_targets("kubernetes", {})
    assert [t.name for t in ts.all()] == ["pd-main"]


def _alert(
    severity: str = "critical", category: str | None = None, **labels: str
) -> dict[str, Any]:
    cls: dict[str, Any] = {"status": "pending"}
    if category:
        cls = {"status": "ok", "severity": severity, "category": category, "summary": "db down",
               "recommendations": ["Fail over"], "model": "m", "prompt_version": "v1"}  # fmt: skip
    return {
        "id": 1, "fingerprint": "03e24befa7b11611", "alertname": "HighCPU", "status": "firing",
        "severity": severity, "labels": {"alertname": "HighCPU", "severity": severity, **labels},
        "annotations": {"summary": "CPU high", "runbook_url": "https://runbooks/cpu"},
        "starts_at": "2026-11-22T03:19:07.741228+00:00", "ends_at": None,
        "generator_url": "http://prom:9090/graph?g0.expr=cpu", "source": "alertmanager",
        "classification": cls,
    }  # fmt: skip


def test_routing_by_labels_severity_and_category() -> None:
    targets = [
        PublishTarget.model_validate(_pd("pd-db")),
        PublishTarget.model_validate(_pd("pd-all", min_severity="error")),
        PublishTarget.model_validate({"type": "slack", "name": "slack-db",
                                      "webhook_url": "http://hook", "match_labels": {"team": "db"}}),
    ]  # fmt: skip
    routes = [
        PublishRoute(targets=["pd-db", "slack-db"], severities=["critical"], categories=["data"]),
        PublishRoute(targets=["pd-all"]),
    ]
    ts = TargetSet(targets, routes)

    def names(alert: dict[str, Any]) -> list[str]:
        return sorted(t.name for t, _ in ts.route(alert, lambda m: present(alert, m), "enriched"))

    assert names(_alert("critical", "data", team="db")) == ["pd-all", "pd-db", "slack-db"]
    assert names(_alert("critical", "data", team="web")) == ["pd-all", "pd-db"]
    assert names(_alert("critical", "network", team="db")) == ["pd-all"]
    assert names(_alert("critical", None, team="db")) == ["pd-all"]  # unclassified: no category
    assert names(_alert("warning", "data", team="db")) == []  # below pd-all's min_severity
    assert sorted(t.name for t in TargetSet(targets).all()) == ["pd-all", "pd-db", "slack-db"]


def test_templates_per_mode() -> None:
    alert = _alert("warning", "data", team="db")
    key = dedup_key(alert)
    assert key == "am-03e24befa7b11611-1795317547"
    transparent = pagerduty_event(alert, present(alert, "transparent"), PD_KEY, key)
    assert transparent["dedup_key"] == key and transparent["payload"]["severity"] == "warning"
    assert "recommendations" not in transparent["payload"]["custom_details"]
    assert {"href": "https://runbooks/cpu", "text": "Runbook"} in transparent["links"]
    enriched = pagerduty_event(alert, present(alert, "enriched"), PD_KEY, key)
    assert enriched["payload"]["class"] == "data"
    assert enriched["payload"]["custom_details"]["recommendations"] == ["Fail over"]
    assert enriched["payload"]["custom_details"]["original"]["summary"] == "CPU high"
    assert "db down" in enriched["payload"]["summary"]
    recs = pagerduty_event(alert, present(alert, "transparent_with_recommendations"), PD_KEY, key)
    assert "CPU high" in recs["payload"]["summary"] and "class" not in recs["payload"]
    assert recs["payload"]["custom_details"]["recommendations"] == ["Fail over"]

    slack = slack_message(alert, present(alert, "transparent_with_recommendations"))
    assert slack["text"].startswith("[FIRING] HighCPU")
    texts = [b.get("text", {}).get("text", "") for b in slack["blocks"]]
    assert any("AI-generated recommendations" in t and "Fail over" in t for t in texts)
    assert slack["attachments"][0]["color"] == "warning"
    resolved = slack_message(alert, present(alert, "transparent"), resolved=True)
    assert (
        resolved["text"].startswith("[RESOLVED]") and resolved["attachments"][0]["color"] == "good"
    )

    rootly = rootly_attributes(alert, present(alert, "enriched"), key)
    assert (rootly["source"], rootly["deduplication_key"]) == ("alertmanager", key)
    assert {"key": "category", "value": "data"} in rootly["labels"]
    assert "Fail over" in rootly["description"] and rootly["data"]["ai_generated"]["model"] == "m"
    plain = rootly_attributes(alert, present(alert, "transparent"), key)
    assert "Fail over" not in plain["description"] and "ai_generated" not in plain["data"]
