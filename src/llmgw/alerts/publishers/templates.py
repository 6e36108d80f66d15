"""What each product is sent: PagerDuty events (``custom_details``), Slack Block Kit messages,
Rootly JSON:API alert attributes, built from an occurrence and its mode's ``view``
(``llmgw.alerts.modes.present``).

- ``transparent``: title, summary and severity from the alert as received.
- ``enriched``: the LLM's severity, category and summary lead; the original severity and summary
  follow (PagerDuty ``custom_details.original``, a Slack context line, Rootly ``data.original``),
  and the recommendations are included.
- ``transparent_with_recommendations``: the alert as received, plus the recommendations
  (``custom_details.recommendations``, a Slack section, Rootly's description suffix).

AI text is always marked as such.
"""

from __future__ import annotations

from typing import Any

from llmgw.alerts.publishers.base import normal_severity

__all__ = ["pagerduty_event", "rootly_attributes", "slack_message", "slack_resolved_reply"]

_EMOJI = {"critical": "🔥", "error": "🚨", "warning": "⚠️", "info": "ℹ️"}  # noqa: RUF001
_COLOR = {"critical": "danger", "error": "danger", "warning": "warning", "info": "#439fe0"}


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _where(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    return str(
        labels.get("instance") or labels.get("pod") or labels.get("job") or labels.get("service")
        or alert.get("source") or "alertmanager"
    )  # fmt: skip


def _recommendations(view: dict[str, Any]) -> list[str]:
    ai = view.get("ai") or {}
    return [str(r) for r in ai.get("recommendations") or []]


def _runbook(alert: dict[str, Any]) -> str | None:
    url = (alert.get("annotations") or {}).get("runbook_url")
    return str(url) if url else None


def pagerduty_event(
    alert: dict[str, Any], view: dict[str, Any], routing_key: str, key: str
) -> dict[str, Any]:
    """An Events API v2 ``trigger`` (reference §2: summary ≤1024, severity enum, links)."""
    severity = normal_severity(view.get("severity"))
    labels = alert.get("labels") or {}
    details: dict[str, Any] = {
        "labels": labels,
        "annotations": alert.get("annotations") or {},
        "fingerprint": alert.get("fingerprint"),
        "mode": view.get("mode"),
    }
    if view.get("ai"):
        details["ai_generated"] = {k: v for k, v in view["ai"].items() if v is not None}
        recs = _recommendations(view)
        if recs:
            details["recommendations"] = recs
    if view.get("original"):
        details["original"] = view["original"]
    payload: dict[str, Any] = {
        "summary": _cut(
            f"[{severity}] {view.get('title')} on {_where(alert)}: {view.get('summary')}", 1024
        ),
        "source": _cut(_where(alert), 255),
        "severity": severity,
        "custom_details": details,
    }
    if alert.get("starts_at"):
        payload["timestamp"] = alert["starts_at"]
    component = labels.get("job") or labels.get("service")
    if component:
        payload["component"] = component
    group = labels.get("namespace") or labels.get("cluster")
    if group:
        payload["group"] = group
    if view.get("category"):
        payload["class"] = view["category"]
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": payload,
        "client": "llmgw",
    }
    links = []
    if str(alert.get("generator_url") or "").startswith(("http://", "https://")):
        links.append({"href": alert["generator_url"], "text": "Source"})
    if _runbook(alert):
        links.append({"href": _runbook(alert), "text": "Runbook"})
    if links:
        event["links"] = links
    return event


def slack_message(
    alert: dict[str, Any], view: dict[str, Any], *, resolved: bool = False
) -> dict[str, Any]:
    """Block Kit message (header, summary, fields, AI section, context) with a coloured bar;
    ``text`` is the notification fallback. ``resolved`` renders the same alert as resolved
    (what ``chat.update`` turns the original message into)."""
    severity = normal_severity(view.get("severity"))
    state = "RESOLVED" if resolved else "FIRING"
    title = str(view.get("title") or alert.get("alertname") or "alert")
    head = "✅" if resolved else _EMOJI[severity]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{head} [{state}] {title} — {severity}", 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"*Summary:* {view.get('summary') or title}", 2900)}},
    ]  # fmt: skip
    labels = alert.get("labels") or {}
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{k}:* `{v}`", 1900)} for k, v in sorted(labels.items())
    ][:10]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    recs = _recommendations(view)
    if recs:
        text = "*AI-generated recommendations:*\n" + "\n".join(f"• {r}" for r in recs)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, 2900)}})
    context = [f"mode: {view.get('mode')}"]
    if view.get("category"):
        context.append(f"category: {view['category']} (AI)")
    if view.get("original"):
        context.append(
            f"original: {view['original'].get('severity')} · {view['original'].get('summary')}"
        )
    if str(alert.get("generator_url") or "").startswith(("http://", "https://")):
        context.append(f"<{alert['generator_url']}|source>")
    if _runbook(alert):
        context.append(f"<{_runbook(alert)}|runbook>")
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _cut(" · ".join(context), 2900)}],
        }
    )
    text = _cut(f"[{state}] {title} on {_where(alert)} ({severity}): {view.get('summary')}", 3000)
    color = "good" if resolved else _COLOR[severity]
    return {"text": text, "blocks": blocks, "attachments": [{"color": color, "fallback": text}]}


def slack_resolved_reply(alert: dict[str, Any], view: dict[str, Any]) -> str:
    """The thread reply posted under the original message when the alert resolves."""
    ends = alert.get("ends_at") or "now"
    return (
        f"✅ [RESOLVED] {view.get('title') or alert.get('alertname')} on {_where(alert)} at {ends}"
    )


def rootly_attributes(alert: dict[str, Any], view: dict[str, Any], key: str) -> dict[str, Any]:
    """``POST /v1/alerts`` attributes (reference §4.A): ``source`` alertmanager, the dedup key as
    ``deduplication_key`` and ``external_id``, labels as ``{key, value}``, the rest in ``data``."""
    severity = normal_severity(view.get("severity"))
    description = str(view.get("description") or view.get("summary") or "")
    recs = _recommendations(view)
    if recs:
        description += "\n\nAI-generated recommendations:\n" + "\n".join(f"- {r}" for r in recs)
    labels = [{"key": k, "value": str(v)} for k, v in sorted((alert.get("labels") or {}).items())]
    if view.get("category"):
        labels.append({"key": "category", "value": str(view["category"])})
    data: dict[str, Any] = {
        "fingerprint": alert.get("fingerprint"),
        "annotations": alert.get("annotations") or {},
        "mode": view.get("mode"),
        "severity": severity,
    }
    if view.get("ai"):
        data["ai_generated"] = {k: v for k, v in view["ai"].items() if v is not None}
    if view.get("original"):
        data["original"] = view["original"]
    attrs: dict[str, Any] = {
        "source": "alertmanager",
        "summary": _cut(
            f"{view.get('title')} on {_where(alert)} ({severity}): {view.get('summary')}", 1000
        ),
        "description": _cut(description, 10_000),
        "deduplication_key": key,
        "external_id": key,
        "labels": labels,
        "data": data,
    }
    if alert.get("starts_at"):
        attrs["started_at"] = alert["starts_at"]
    if str(alert.get("generator_url") or "").startswith(("http://", "https://")):
        attrs["external_url"] = alert["generator_url"]
    return attrs
