"""What each processing mode forwards for an occurrence (the API's ``view``; publishers' input).

- ``transparent``: the alert as received; severity from its ``severity`` label.
- ``enriched``: the LLM's severity, category, summary, probable cause and recommendations
  replace the title fields; the original labels and annotations are kept beside them.
- ``transparent_with_recommendations``: the alert as received plus the LLM's recommendations.

LLM fields are marked ``ai_generated``. Without a usable classification every mode is
``transparent`` (pass-through), and ``view.classified`` says so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MODES", "present"]

MODES = ("transparent", "enriched", "transparent_with_recommendations")


def present(alert: dict[str, Any], mode: str) -> dict[str, Any]:
    """The forwarded form of ``alert`` (an ``alert_record``) under ``mode``."""
    ann = alert.get("annotations") or {}
    view: dict[str, Any] = {
        "mode": mode,
        "title": alert.get("alertname", ""),
        "status": alert.get("status"),
        "severity": alert.get("severity") or "info",
        "summary": ann.get("summary") or ann.get("description") or alert.get("alertname", ""),
        "description": ann.get("description", ""),
        "labels": alert.get("labels") or {},
        "annotations": ann,
        "classified": False,
    }
    cls = alert.get("classification") or {}
    if mode == "transparent" or cls.get("status") != "ok" or not cls.get("severity"):
        return view
    ai = {
        "ai_generated": True,
        "model": cls.get("model"),
        "prompt_version": cls.get("prompt_version"),
        "classified_at": cls.get("classified_at"),
        "recommendations": list(cls.get("recommendations") or []),
    }
    view["classified"] = True
    if mode == "transparent_with_recommendations":
        view["ai"] = ai
        return view
    ai.update(
        severity=cls.get("severity"),
        category=cls.get("category"),
        summary=cls.get("summary"),
        probable_cause=cls.get("probable_cause"),
        confidence=cls.get("confidence"),
    )
    view.update(
        severity=cls.get("severity"),
        summary=cls.get("summary"),
        category=cls.get("category"),
        original={"severity": view["severity"], "summary": view["summary"]},
        ai=ai,
    )
    return view
