"""Alert operations for the CLI and the TUI: on the database (``LocalAlerts``) or on a running
server's ``/api/alerts`` (``RemoteAlerts``). Both return the same JSON-ready records.

Acknowledgements, notes and re-classifications are written to the audit log (who and when), by
``LocalAlerts`` here and by the server for remote calls. Given the processing ``mode``,
``LocalAlerts`` adds the ``view`` the server adds, so ``--json`` is the same either way. Both
also implement ``llmgw.alerts.source.AlertSource`` (``search``) for the dashboard.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from llmgw.errors import LlmgwError
from llmgw.storage.opener import EngineOpener, resolve

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx
    from sqlalchemy.engine import Engine

    from llmgw.admin.audit import AuditService
    from llmgw.admin.ops import Actor
    from llmgw.alerts.queries import AlertFilter, AlertHistory
    from llmgw.config import AlertsSettings

__all__ = ["AlertOps", "LocalAlerts", "RemoteAlerts", "filter_query"]


class AlertOps(Protocol):
    """What ``llmgw alerts`` and the dashboard's Alerts screen do."""

    def list(self, f: AlertFilter, *, limit: int, cursor: str | None) -> dict[str, Any]: ...
    def show(self, alert_id: int) -> dict[str, Any]: ...
    def stats(self, *, since: str | None, by: str) -> dict[str, Any]: ...
    def ack(self, alert_id: int, note: str | None) -> dict[str, Any]: ...
    def annotate(self, alert_id: int, note: str) -> dict[str, Any]: ...
    def reclassify(self, alert_id: int) -> dict[str, Any]: ...
    def targets(self) -> dict[str, Any]: ...
    def publish_test(self, name: str) -> dict[str, Any]: ...


def filter_query(f: AlertFilter) -> list[tuple[str, str]]:
    """``f`` as the API's query parameters."""
    q: list[tuple[str, str]] = []
    for name in ("status", "severity", "alertname", "category", "classification", "q", "source"):
        value = getattr(f, name)
        if value is not None:
            q.append((name, str(value)))
    q += [("label", pair) for pair in f.labels]
    for name in ("since", "until"):
        value = getattr(f, name)
        if value is not None:
            q.append((name, value.isoformat()))
    for name in ("flapping", "acked"):
        value = getattr(f, name)
        if value is not None:
            q.append((name, "true" if value else "false"))
    return q


def _search_query(
    status: str | None, severity: str | None, text: str | None
) -> list[tuple[str, str]]:
    pairs = (("status", status), ("severity", severity), ("q", text))
    return [(name, value) for name, value in pairs if value]


class LocalAlerts:
    """``AlertOps`` on the database, as ``actor``, with ``source`` in the audit log; with the
    processing ``mode`` (``alerts.mode``) records carry the ``view`` the API adds."""

    def __init__(
        self,
        engine: Engine | EngineOpener,
        actor: Actor,
        source: str = "cli",
        *,
        mode: str | None = None,
        settings: AlertsSettings | None = None,
    ) -> None:
        self._engine = engine
        self.actor = actor
        self.source = source
        self.mode = mode
        self.settings = settings
        """``[alerts]``: the configured publishing targets (``targets``, ``publish_test``)."""

    @property
    def engine(self) -> Engine:
        """The database engine (an ``EngineOpener`` given instead is opened now, once)."""
        return resolve(self._engine)

    # Built on first use: the audit service loads SQLModel's tables (a quarter of a second),
    # which the dashboard's first screen never needs (tests/test_import_hygiene.py).
    @cached_property
    def history(self) -> AlertHistory:
        """The alert history queries on the engine."""
        from llmgw.alerts.queries import AlertHistory

        return AlertHistory(self.engine)

    @cached_property
    def audit(self) -> AuditService:
        """The audit log, for acknowledgements, notes and re-classifications."""
        from llmgw.admin.audit import AuditService

        return AuditService(self.engine)

    def _view(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.mode is not None:
            from llmgw.alerts.modes import present

            record["view"] = present(record, self.mode)
        return record

    def list(self, f: AlertFilter, *, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of occurrences, newest first."""
        page = self.history.list(f, limit=limit, cursor=cursor)
        for record in page["data"]:
            self._view(record)
        return page

    def search(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        text: str | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """``AlertSource.search``: the newest occurrences that match."""
        from llmgw.alerts.queries import AlertFilter

        f = AlertFilter(status=status or None, severity=severity or None, q=text or None)
        return self.list(f, limit=limit, cursor=None)

    def show(self, alert_id: int) -> dict[str, Any]:
        """One occurrence with its timeline."""
        return self._view(self.history.show(alert_id))

    def stats(self, *, since: str | None, by: str) -> dict[str, Any]:
        """Counts (``since`` is ISO 8601)."""
        from datetime import datetime

        return self.history.stats(since=datetime.fromisoformat(since) if since else None, by=by)

    def ack(self, alert_id: int, note: str | None) -> dict[str, Any]:
        """Acknowledge, and audit it."""
        out = self.history.ack(alert_id, self.actor.name, note)
        self.audit.record(self.actor, "alerts.ack", str(alert_id), source=self.source)
        return out

    def annotate(self, alert_id: int, note: str) -> dict[str, Any]:
        """Set the note, and audit it."""
        out = self.history.annotate(alert_id, self.actor.name, note)
        self.audit.record(self.actor, "alerts.note", str(alert_id), source=self.source)
        return out

    def reclassify(self, alert_id: int) -> dict[str, Any]:
        """Queue a fresh classification (a running server's worker does it), and audit it."""
        out = self.history.reclassify(alert_id, self.actor.name)
        self.audit.record(self.actor, "alerts.reclassify", str(alert_id), source=self.source)
        return out

    def _publishing(self) -> Any:
        from llmgw.alerts.publishers.step import Publishing
        from llmgw.alerts.stats import AlertStats
        from llmgw.config import AlertsSettings

        return Publishing(self.engine, self.settings or AlertsSettings(), AlertStats())

    def targets(self) -> dict[str, Any]:
        """The configured targets (those from Kubernetes Secrets only a server knows; the
        health is this process's, so ``unused``)."""
        import asyncio

        p = self._publishing()
        try:
            return dict(p.describe())
        finally:
            asyncio.run(p.aclose())

    def publish_test(self, name: str) -> dict[str, Any]:
        """Publish a test alert to a configured target from here, then resolve it; audited."""
        import asyncio

        async def run() -> dict[str, Any]:
            p = self._publishing()
            try:
                return dict(await p.test(name))
            finally:
                await p.aclose()

        out = asyncio.run(run())
        self.audit.record(self.actor, "alerts.publish_test", name, source=self.source)
        return out


class RemoteAlerts:
    """``AlertOps`` over a server's ``/api/alerts`` with an admin's API key or, with ``auth``,
    the stored ``llmgw login`` for that URL (httpx). The token is in no error or ``repr``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        source: str = "cli",
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
    ) -> None:
        import httpx

        from llmgw import __version__
        from llmgw.admin.remote import _safe_url  # the admin client's URL check and form
        from llmgw.errors import UsageError

        self.url = _safe_url(url)
        if not token and auth is None:
            raise UsageError(
                f"llmgw alerts with --url {self.url} needs an admin's API key or a login",
                hint="pass --token KEY (or set LLMGW_TOKEN) before the command, "
                f"or run `llmgw login --url {self.url}`",
                param="token",
            )
        self.source = source
        headers = {"User-Agent": f"llmgw/{__version__}", "X-Llmgw-Source": source}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._made: httpx.Client | None = None
        self._make: Callable[[], httpx.Client] = lambda: httpx.Client(
            base_url=self.url,
            headers=headers,
            auth=None if token else auth,
            timeout=httpx.Timeout(timeout, connect=5.0),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc credentials picked up behind the user's back
        )

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"RemoteAlerts(url={self.url!r}, source={self.source!r})"

    @property
    def _client(self) -> httpx.Client:
        # Made on first use: a client costs about 20 ms of CPU (its TLS context), which
        # `llmgw dash --url` would pay at start for a screen that may never be opened.
        if self._made is None:
            self._made = self._make()
        return self._made

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        import httpx

        from llmgw.admin.answers import error_from_answer, unreachable_reason
        from llmgw.errors import Unavailable

        try:
            r = self._client.request(method, "/api/alerts" + path, **kw)
        except httpx.TimeoutException:
            raise Unavailable(
                f"no answer in time from the llmgw server at {self.url}",
                hint="check --url and that `llmgw serve` runs there",
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the llmgw server at {self.url}: {unreachable_reason(exc)}",
                hint="check --url and that `llmgw serve` runs there",
            ) from None
        if r.status_code >= 400:
            try:
                body: Any = r.json()
            except ValueError:
                body = r.text
            raise error_from_answer(
                r.status_code, body, self.url, retry_after=r.headers.get("retry-after")
            )
        data = r.json()
        if not isinstance(data, dict):
            raise LlmgwError("unexpected answer from the server")
        return data

    def list(self, f: AlertFilter, *, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of occurrences, newest first."""
        params = [*filter_query(f), ("limit", str(limit))]
        if cursor:
            params.append(("cursor", cursor))
        return self._call("GET", "", params=params)

    def search(
        self,
        *,
        status: str | None = None,
        severity: str | None = None,
        text: str | None = None,
        limit: int = 200,
    ) -> dict[str, Any]:
        """``AlertSource.search``: the newest occurrences that match."""
        params = [*_search_query(status, severity, text), ("limit", str(limit))]
        return self._call("GET", "", params=params)

    def show(self, alert_id: int) -> dict[str, Any]:
        """One occurrence with its timeline."""
        return self._call("GET", f"/{alert_id}")

    def stats(self, *, since: str | None, by: str) -> dict[str, Any]:
        """Counts."""
        params = {"by": by, **({"since": since} if since else {})}
        return self._call("GET", "/stats", params=params)

    def ack(self, alert_id: int, note: str | None) -> dict[str, Any]:
        """Acknowledge."""
        return self._call("POST", f"/{alert_id}/ack", json={"note": note} if note else {})

    def annotate(self, alert_id: int, note: str) -> dict[str, Any]:
        """Set the note."""
        return self._call("POST", f"/{alert_id}/note", json={"note": note})

    def reclassify(self, alert_id: int) -> dict[str, Any]:
        """Queue a fresh classification."""
        return self._call("POST", f"/{alert_id}/reclassify")

    def targets(self) -> dict[str, Any]:
        """The server's targets (config and Secrets) with their health."""
        return self._call("GET", "/targets")

    def publish_test(self, name: str) -> dict[str, Any]:
        """Have the server publish a test alert to ``name`` and resolve it."""
        from urllib.parse import quote

        return self._call("POST", f"/targets/{quote(name, safe='')}/test")

    def close(self) -> None:
        """Close the HTTP client."""
        if self._made is not None:
            self._made.close()
