"""One alert: what Alertmanager sent (labels, annotations, times), the AI classification marked
as AI output, its publications (one row per target and action) and the timeline; ``a``
acknowledges, ``c`` re-classifies, Escape goes back.

It polls ``AlertSource.show`` like any screen, so a re-classification's result (pending, then
the model's answer) and other people's acknowledgements appear while it is open. At 120 columns
and more the classification stands beside the facts instead of below them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static

from llmgw.tui.format import readable, severity_style, short_time
from llmgw.tui.screens.alerts import AlertActions, alert_source, suppressed_text

if TYPE_CHECKING:
    from llmgw.admin.ops import AdminOps

__all__ = ["AlertDetailScreen"]


_STATE_COLORS = {"sent": "success", "failed": "error", "unknown": "error",
                 "sending": "warning", "retrying": "warning"}  # fmt: skip
"""The theme variable a publication's state is drawn in."""


def _publications(pubs: list[dict[str, Any]], colors: dict[str, str]) -> Text:
    """One row per target and action: action, target (type), state, HTTP status, attempts,
    when it last changed; below it, dim, the external id, the next try and the last error."""
    out = Text()
    for i, p in enumerate(pubs):
        state = str(p.get("state"))
        attempts = p.get("attempts") or 0
        out.append("\n" if i else "")
        out.append(f"{p.get('action')!s:<8}", style="bold")
        out.append(f"{p.get('target')} ({p.get('type')})  ")
        out.append(state, style=f"bold {colors.get(_STATE_COLORS.get(state, ''), '')}")
        out.append(f"  HTTP {p.get('http_status') or '-'}")
        out.append(f"  {attempts} attempt{'' if attempts == 1 else 's'}")
        out.append(f"  {short_time(p.get('updated_at'))}", style="dim")
        if p.get("external_id"):
            out.append(f"\n        id {p['external_id']}", style="dim")
        if p.get("next_at") and state == "retrying":
            out.append(f"\n        next try {short_time(p['next_at'])}", style="dim")
        if p.get("error"):
            out.append("\n        last error: ", style="dim")
            out.append(str(p["error"]), style=colors.get("error", ""))
    return out


def _timeline(events: list[dict[str, Any]]) -> Text:
    """One line per event: when, what, who, the detail in words."""
    out = Text()
    for i, e in enumerate(events):
        detail = e.get("detail") or {}
        words = "; ".join(f"{k}: {readable(v, str(k))}" for k, v in detail.items())
        out.append("\n" if i else "")
        out.append(short_time(e.get("at")), style="dim")
        out.append(f"  {e.get('kind')}", style="bold")
        if e.get("actor"):
            out.append(f"  by {e['actor']}")
        if words:
            out.append(f"  {words}", style="dim")
    return out


class AlertDetailScreen(AlertActions):
    """The alert ``alert_id``; ``first`` is its list record, shown until the first poll."""

    TITLE_TEXT = "Alert"
    AUTO_FOCUS = "#alert-body"
    HORIZONTAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-narrow"), (120, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="alert-back", tooltip="Back to the list"),
        Binding("a", "ack", "Ack", id="alert-ack", tooltip="Acknowledge this alert"),
        Binding("c", "reclassify", "Re-classify", id="alert-reclassify", tooltip="Ask the model again"),
    ]  # fmt: skip

    def __init__(self, alert_id: int, first: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.alert_id = alert_id
        self.record: dict[str, Any] | None = first

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="alert-columns"):
            with VerticalScroll(id="alert-body"):
                yield Static("", id="alert-head")
                yield Static("", id="alert-labels")
                yield Static("Publications", id="alert-publications-title", classes="section")
                yield Static("", id="alert-publications")
                yield Static("Timeline", classes="section")
                yield Static("", id="alert-timeline")
            with VerticalScroll(id="alert-ai-column"):
                ai = Static("", id="alert-ai")
                ai.border_title = "AI-generated classification"
                yield ai

    def on_mount(self) -> None:  # PolledScreen.on_mount runs after this and polls
        if self.record is not None:
            self._draw(self.record)

    def fetch(self, ops: AdminOps) -> dict[str, Any]:
        return alert_source(self).show(self.alert_id)

    def show(self, data: dict[str, Any]) -> None:
        self.record = data
        self._draw(data)

    def current(self) -> dict[str, Any] | None:
        """This alert."""
        return self.record

    def action_back(self) -> None:
        """Back to the list."""
        self.dismiss(None)

    def _draw(self, rec: dict[str, Any]) -> None:
        colors = self.app.theme_variables
        firing = rec.get("status") == "firing"
        sev = rec.get("severity") or "none"
        head = Text()
        head.append(f"#{rec['id']} {rec.get('alertname')}", style="bold")
        head.append("  ")
        head.append(str(rec.get("status")), style=colors.get("error" if firing else "success", ""))
        head.append("  severity ")
        head.append(sev, style=severity_style(sev, colors, firing=firing))
        if rec.get("flapping"):
            head.append("  FLAPPING", style=f"bold {colors.get('warning', '')}")
        head.append(f"\nsource {rec.get('source')}  fingerprint {rec.get('fingerprint')}")
        head.append(f"  fired {rec.get('fire_count')}x  notified {rec.get('notifications')}x")
        if suppressed_text(rec):
            checked = short_time((rec.get("suppressed") or {}).get("checked_at"))
            head.append(f"\n{suppressed_text(rec)}", style="bold")
            head.append(f" (Alertmanager, checked {checked})", style="dim")
        head.append(f"\nstarted {short_time(rec.get('starts_at'))}")
        head.append(f"  ended {short_time(rec.get('ends_at'))}")
        head.append(f"  last seen {short_time(rec.get('last_seen'))}")
        if rec.get("acked_at"):
            head.append(
                f"\nacknowledged by {rec.get('acked_by')} at {short_time(rec.get('acked_at'))}",
                style=colors.get("success", ""),
            )
        else:
            head.append("\nnot acknowledged (a)", style="dim")
        if rec.get("note"):
            head.append(f"\nnote: {rec['note']}")
        self.query_one("#alert-head", Static).update(head)

        facts = Text()
        for k, v in sorted((rec.get("annotations") or {}).items()):
            facts.append(f"{k}: ", style="bold")
            facts.append(f"{v}\n")
        labels = rec.get("labels") or {}
        facts.append("labels: ", style="bold")
        facts.append(", ".join(f"{k}={v}" for k, v in sorted(labels.items())), style="dim")
        self.query_one("#alert-labels", Static).update(facts)

        pubs = rec.get("publications") or []
        for ident in ("#alert-publications-title", "#alert-publications"):
            self.query_one(ident).display = bool(pubs)  # none: no target, or not loaded yet
        self.query_one("#alert-publications", Static).update(_publications(pubs, colors))

        events = rec.get("timeline")
        self.query_one("#alert-timeline", Static).update(
            _timeline(events) if events else Text("loading…", style="dim")
        )
        self.query_one("#alert-ai", Static).update(self._ai(rec))

    def _ai(self, rec: dict[str, Any]) -> Text:
        """The classification, marked as the model's output (never mistaken for a fact)."""
        colors = self.app.theme_variables
        cls = rec.get("classification") or {}
        state = cls.get("status") or "pending"
        out = Text()
        if state != "ok":
            why = {
                "pending": "not classified yet: the server's classifier has it queued",
                "skipped": "not classified: the processing mode is transparent",
                "timeout": "the model did not answer in time; retried later",
                "error": "the call failed (provider down, limit, breaker open); retried later",
                "invalid_output": "the model's answer did not fit the schema; retried later",
            }.get(str(state), str(state))
            out.append(f"{state}: ", style="bold")
            out.append(why)
            if not cls.get("severity"):
                out.append("\nc asks the model again.", style="dim")
                return out
            out.append("\nThe previous result, until then:\n", style="dim")
        out.append(
            "AI output, verify before acting\n", style=f"bold reverse {colors.get('accent', '')}"
        )
        cached = " (cached)" if cls.get("cache_hit") else ""
        out.append(
            f"{cls.get('model')}, prompt {cls.get('prompt_version')}, "
            f"{short_time(cls.get('classified_at'))}{cached}\n",
            style="dim",
        )
        sev = str(cls.get("severity"))
        out.append("severity ", style="bold")
        out.append(sev, style=severity_style(sev, colors))
        out.append("  category ", style="bold")
        out.append(str(cls.get("category")))
        confidence = cls.get("confidence")
        if isinstance(confidence, int | float):
            out.append(f"  confidence {confidence:.0%}")
        out.append("\n\nsummary: ", style="bold")
        out.append(f"{cls.get('summary')}\n", style="italic")
        out.append("probable cause: ", style="bold")
        out.append(f"{cls.get('probable_cause')}\n", style="italic")
        recs = cls.get("recommendations") or []
        if recs:
            out.append("recommendations:\n", style="bold")
            for item in recs:
                out.append(f" • {item}\n", style="italic")
        return out
