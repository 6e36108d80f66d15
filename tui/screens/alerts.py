"""Alerts: the alert history live, coloured by severity, filtered by status, severity and text;
Enter opens an alert (timeline, AI classification); ``a`` acknowledges, ``c`` re-classifies,
each after a confirmation (the server or ``LocalAlerts`` writes the audit row).

The data comes through ``AlertSource`` (``app.alerts``: the server's ``/api/alerts`` or the
database), never from storage directly. Filters are sent with the query, so the list is the
newest ``LIMIT`` matches of the whole history, not a filter over what was fetched.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Static

from llmgw.errors import LlmgwError
from llmgw.tui.format import age, severity_style, short_time
from llmgw.tui.screens.base import PolledScreen, describe
from llmgw.tui.screens.listing import FilteredScreen
from llmgw.tui.widgets.dialogs import ConfirmScreen, Field, FormScreen, optional_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmgw.admin.ops import AdminOps
    from llmgw.alerts.source import AlertSource

__all__ = [
    "SEVERITIES",
    "STATUSES",
    "AlertActions",
    "AlertsScreen",
    "ai_cell",
    "alert_source",
    "suppressed_text",
]

LIMIT = 100
"""Rows fetched per poll, the newest matches of the whole history: more than a 160x48 terminal
shows (200 records were about 190 KiB of JSON every --interval, 100 are half that)."""
STATUSES: tuple[str | None, ...] = (None, "firing", "resolved")
SEVERITIES: tuple[str | None, ...] = (None, "critical", "error", "warning", "info")


def alert_source(screen: PolledScreen) -> AlertSource:
    """The app's alert history, or an error saying this dashboard has none."""
    source: AlertSource | None = getattr(screen.app, "alerts", None)
    if source is None:
        raise LlmgwError("this dashboard was started without the alert history")
    return source


def ai_cell(rec: dict[str, Any]) -> Text:
    """The classification in a table cell: ``AI warning`` when the model answered (its
    category is in the preview and the detail), else its state (pending, timeout, error,
    invalid_output, skipped)."""
    cls = rec.get("classification") or {}
    state = str(cls.get("status") or "pending")
    if state == "ok" and cls.get("severity"):
        return Text(f"AI {cls['severity']}", style="italic")
    if state in ("pending", "skipped"):
        return Text(state, style="dim")
    return Text(state, style="bold")


def suppressed_text(rec: dict[str, Any]) -> str:
    """What Alertmanager last said about a firing alert's silences and inhibitions (the
    worker asks it; ``suppressed`` in the record), in words, or ``""``."""
    sup = rec.get("suppressed") or {}
    if rec.get("status") != "firing" or not sup.get("state"):
        return ""
    if sup["state"] == "silenced":
        parts = []
        for silence in sup.get("silenced_by") or []:
            who = f" by {silence['created_by']}" if silence.get("created_by") else ""
            until = f" until {short_time(silence['ends_at'])}" if silence.get("ends_at") else ""
            why = f": {silence['comment']}" if silence.get("comment") else ""
            parts.append(f"{who}{until}{why}".strip())
        return "silenced " + "; ".join(p for p in parts if p) if any(parts) else "silenced"
    return "inhibited by " + (", ".join(sup.get("inhibited_by") or []) or "another alert")


def _status_cell(rec: dict[str, Any], colors: dict[str, str]) -> Text:
    """firing (error colour), resolved (success), or silenced/inhibited while firing (muted:
    Alertmanager does not notify anyone about it)."""
    state = str((rec.get("suppressed") or {}).get("state") or "")
    if rec.get("status") == "firing" and state:
        return Text(state, style="dim italic")
    firing = rec.get("status") == "firing"
    return Text(str(rec.get("status")), style=colors.get("error" if firing else "success", ""))


class AlertActions(PolledScreen):
    """Acknowledge and re-classify an alert after a confirmation: the list and the detail
    screen share this (``current`` says which alert)."""

    def current(self) -> dict[str, Any] | None:
        """The alert the action is for."""
        raise NotImplementedError

    def action_ack(self) -> None:
        """Acknowledge the alert, with an optional note, after a confirmation."""
        rec = self.current()
        if rec is None:
            return
        # Names and notes come from Alertmanager and people: dialogs and notifications show
        # them as plain text (markup=False), never as markup.
        ident, name = int(rec["id"]), str(rec.get("alertname") or "?")
        if rec.get("acked_at"):
            self.notify(
                f"#{ident} {name} was acknowledged by {rec.get('acked_by')}",
                title="Already acknowledged",
                markup=False,
            )
            return

        def answered(values: dict[str, Any] | None) -> None:
            if values is not None:
                self._change(
                    f"Acknowledged #{ident} {name}",
                    lambda src: src.ack(ident, values["note"]),
                )

        title = (
            f"Acknowledge #{ident} {name} ({rec.get('status')}, "
            f"{rec.get('severity') or 'none'})? "
            "Your name and the time go to its timeline and the audit log."
        )
        note = Field("note", "Note (optional): why, or what you do", parse=optional_text)
        self.app.push_screen(FormScreen(title, [note], submit="Acknowledge"), answered)

    def action_reclassify(self) -> None:
        """Ask the model again (one LLM call), after a confirmation."""
        rec = self.current()
        if rec is None:
            return
        ident, name = int(rec["id"]), str(rec.get("alertname") or "?")

        def answered(yes: bool | None) -> None:
            if yes:
                self._change(
                    f"Re-classification of #{ident} {name} queued",
                    lambda src: src.reclassify(ident),
                )

        question = (
            f"Re-classify #{ident} {name}? The server's classifier asks the model again (one LLM "
            "call through the router, billed to the alert service, the cache bypassed); the "
            "current classification stays until the new one arrives."
        )
        self.app.push_screen(ConfirmScreen(question, action="Re-classify"), answered)

    def _change(self, done: str, call: Callable[[AlertSource], object]) -> None:
        self._run_change(done, call)

    @work(thread=True, group="mutate", exit_on_error=False)
    def _run_change(self, done: str, call: Callable[[AlertSource], object]) -> None:
        try:
            call(alert_source(self))
        except Exception as exc:  # shown to the person, never a traceback
            self.app.call_from_thread(
                partial(self.notify, markup=False),
                describe(exc),
                title="Alert change failed",
                severity="error",
            )
            return
        self.app.call_from_thread(partial(self.notify, markup=False), done, title="Done")
        self.app.call_from_thread(self.poll)


class AlertsScreen(AlertActions, FilteredScreen):
    """The newest alerts first, live; ``s`` status, ``v`` severity, ``/`` text; Enter opens."""

    TITLE_TEXT = "Alerts"
    TABLE_ID = "alerts"
    FILTER_PLACEHOLDER = "text in the name, labels or annotations (job=node, disk…)"
    COLUMNS = ("id", "severity", "status", "alert", "seen", "ack", "AI", "fires", "summary")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="alerts-open", tooltip="Timeline and classification"),
        Binding("s", "cycle_status", "Status", id="alerts-status", tooltip="All, firing, resolved"),
        Binding(
            "v",
            "cycle_severity",
            "Severity",
            id="alerts-severity",
            tooltip="All, critical, error, warning, info",
        ),
        Binding("a", "ack", "Ack", id="alerts-ack", tooltip="Acknowledge the selected alert"),
        Binding(
            "c",
            "reclassify",
            "Re-classify",
            id="alerts-reclassify",
            tooltip="Ask the model again about the selected alert",
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []
        self.status: str | None = None
        self.severity: str | None = None
        self._typing: Timer | None = None

    def compose_body(self) -> ComposeResult:
        yield from self.compose_filter()
        yield Static("", id="alert-filters")
        table: DataTable[Any] = DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        table.add_columns(*self.COLUMNS)
        yield table
        yield Static("", id="detail")

    def on_mount(self) -> None:  # PolledScreen.on_mount runs after this and polls
        self._filters_line()

    def _asked(self) -> tuple[str | None, str | None, str | None]:
        return self.status, self.severity, self.query_text or None

    def fetch(self, ops: AdminOps) -> tuple[tuple[str | None, ...], dict[str, Any]]:
        asked = self._asked()
        status, severity, text = asked
        page = alert_source(self).search(status=status, severity=severity, text=text, limit=LIMIT)
        return asked, page

    def show(self, data: tuple[tuple[str | None, ...], dict[str, Any]]) -> None:
        asked, page = data
        if asked != self._asked():
            return  # an answer for filters changed since (a newer poll is on its way)
        self.records = list(page.get("data") or [])
        self._fill()

    def render_rows(self) -> None:
        """The text filter changed: ask again, once typing pauses."""
        self._filters_line()
        if self._typing is not None:
            self._typing.stop()
        self._typing = self.set_timer(0.3, self.poll)

    def _fill(self) -> None:
        colors = self.app.theme_variables
        now = self.llmgw.now()
        table = self.query_one("#alerts", DataTable)
        row = table.cursor_row
        table.clear()
        for rec in self.records:
            firing = rec.get("status") == "firing"
            sev = rec.get("severity") or "none"
            style = severity_style(sev, colors, firing=firing)
            summary = (rec.get("annotations") or {}).get("summary") or ""
            table.add_row(
                str(rec["id"]),
                Text(sev, style=style),
                _status_cell(rec, colors),
                Text(str(rec.get("alertname")), style=style if firing else "dim"),
                age(rec.get("last_seen"), now),
                "yes" if rec.get("acked_at") else "",
                ai_cell(rec),
                f"{rec.get('fire_count')}" + (" flap" if rec.get("flapping") else ""),
                Text(summary),  # what Alertmanager sent: shown as is, never read as markup
                key=str(rec["id"]),
            )
        if self.records:
            table.move_cursor(row=min(max(row, 0), len(self.records) - 1))
        self._preview(table.cursor_row)
        self.set_status()

    def current(self) -> dict[str, Any] | None:
        """The alert under the cursor."""
        row = self.query_one("#alerts", DataTable).cursor_row
        return self.records[row] if 0 <= row < len(self.records) else None

    @on(DataTable.RowHighlighted, "#alerts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview(event.cursor_row)

    @on(DataTable.RowSelected, "#alerts")
    def _selected(self) -> None:
        self.action_open()

    def _preview(self, index: int) -> None:
        pane = self.query_one("#detail", Static)
        if not 0 <= index < len(self.records):
            pane.update("no alert matches" if self.loaded else "")
            return
        rec = self.records[index]
        colors = self.app.theme_variables
        firing = rec.get("status") == "firing"
        out = Text()
        out.append(f"#{rec['id']} {rec.get('alertname')}", style="bold")
        out.append(f"  {rec.get('status')}  ")
        sev = rec.get("severity") or "none"
        out.append(sev, style=severity_style(sev, colors, firing=firing))
        if rec.get("flapping"):
            out.append("  FLAPPING", style=f"bold {colors.get('warning', '')}")
        if suppressed_text(rec):
            out.append(f"  {suppressed_text(rec)}", style="italic")
        if rec.get("acked_at"):
            out.append(f"  acknowledged by {rec.get('acked_by')}")
        ann = rec.get("annotations") or {}
        if ann.get("summary") or ann.get("description"):
            out.append(f"\n{ann.get('summary') or ann.get('description')}")
        cls = rec.get("classification") or {}
        if cls.get("status") == "ok" and cls.get("summary"):
            out.append("\nAI-generated: ", style=f"bold {colors.get('accent', '')}")
            out.append(f"{cls.get('category')}: {cls['summary']}", style="italic")
        labels = rec.get("labels") or {}
        out.append(
            "\n" + " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname"),
            style="dim",
        )
        pane.update(out)

    def _filters_line(self) -> None:
        line = Text()
        for name, value in (
            ("status", self.status),
            ("severity", self.severity),
            ("text", self.query_text),
        ):
            line.append(f"{name}: ", style="dim")
            line.append(value or "any", style="bold" if value else "")
            line.append("   ")
        self.query_one("#alert-filters", Static).update(line)

    def status_text(self) -> str:
        firing = sum(1 for r in self.records if r.get("status") == "firing")
        more = "+" if len(self.records) >= LIMIT else ""
        return f"{len(self.records)}{more} alerts, {firing} firing; {super().status_text()}"

    def _cycle(self, values: tuple[str | None, ...], now: str | None) -> str | None:
        return values[(values.index(now) + 1) % len(values)] if now in values else values[0]

    def action_cycle_status(self) -> None:
        """Show every alert, only firing ones, or only resolved ones."""
        self.status = self._cycle(STATUSES, self.status)
        self._filters_line()
        self.poll()

    def action_cycle_severity(self) -> None:
        """Show every severity, or one: critical, error, warning, info."""
        self.severity = self._cycle(SEVERITIES, self.severity)
        self._filters_line()
        self.poll()

    def action_open(self) -> None:
        """Open the selected alert: its timeline and its AI classification."""
        rec = self.current()
        if rec is None:
            return
        from llmgw.tui.screens.alert_detail import AlertDetailScreen

        self.app.push_screen(AlertDetailScreen(int(rec["id"]), rec))
