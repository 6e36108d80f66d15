"""``llmgw alerts``: the alert history (list, show, stats, ack, note, reclassify, test-fire) and
its publishing targets (targets, publish-test).

Local (the database) by default; with the global ``--url``/``--token`` (an admin's API key)
on that server's ``/api/alerts``. ``test-fire`` sends a sample Alertmanager delivery to a
server's webhook.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.cli.output import emit_json, print_table, when_text
from llmgw.cli.state import state
from llmgw.durations import parse_duration

if TYPE_CHECKING:
    from llmgw.alerts.ops import AlertOps

__all__ = ["alerts_app"]

alerts_app = typer.Typer(
    help="The alert history: list, show, stats, ack, note, reclassify, test-fire; publishing"
    " targets: targets, publish-test.",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _ops(ctx: typer.Context) -> AlertOps:
    st = state(ctx)
    if st.url is not None:
        from llmgw.alerts.ops import RemoteAlerts

        # An admin's key (--token / LLMGW_TOKEN) or the stored `llmgw login` for that URL, as
        # the other admin commands take it.
        auth = None if st.token else st.login(st.url)
        remote = RemoteAlerts(st.url, st.token, "cli", auth=auth)
        ctx.call_on_close(remote.close)
        return remote
    from llmgw.admin.ops import Actor
    from llmgw.alerts.ops import LocalAlerts

    # With the processing mode, records carry the `view` the server adds: the same --json.
    return LocalAlerts(
        st.engine(), Actor.local(), "cli", mode=st.settings.alerts.mode, settings=st.settings.alerts
    )


def _cls_text(record: dict[str, Any]) -> str:
    cls = record.get("classification") or {}
    if cls.get("status") == "ok" and cls.get("severity"):
        return f"AI: {cls['severity']}/{cls.get('category')}"
    return str(cls.get("status", "-"))


def _suppressed_text(sup: dict[str, Any]) -> str:
    if sup.get("state") == "silenced":
        parts = []
        for s in sup.get("silenced_by") or []:
            who = f" by {s['created_by']}" if s.get("created_by") else ""
            until = f" until {when_text(s['ends_at'])}" if s.get("ends_at") else ""
            why = f": {s['comment']}" if s.get("comment") else ""
            parts.append(f"{s.get('id', '?')[:8]}{who}{until}{why}")
        return "SILENCED " + "; ".join(parts)
    return "INHIBITED by " + ", ".join(sup.get("inhibited_by") or [])


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="firing or resolved.", show_default=False)
    ] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="The severity label.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The alertname.", show_default=False)
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search", "-q", help="Text in name, labels or annotations.", show_default=False
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="key=value (repeat for several).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only the last 15m, 12h, 7d... (by last delivery).", show_default=False
        ),
    ] = None,
    flapping: Annotated[bool, typer.Option("--flapping", help="Only flapping alerts.")] = False,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", help="alertmanager, or llmgw (the gateway's own).", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 50,
    cursor: Annotated[
        str | None,
        typer.Option("--cursor", help="next_cursor of a previous --json page.", show_default=False),
    ] = None,
    json: Json = False,
) -> None:
    """List alerts, newest first, with their AI classification (marked AI)."""
    from llmgw.alerts.queries import AlertFilter

    start = datetime.now(UTC) - parse_duration(since, param="--since") if since else None
    f = AlertFilter(
        status=status,
        severity=severity,
        alertname=name,
        q=search,
        labels=tuple(label or ()),
        since=start,
        flapping=True if flapping else None,
        source=source,
    )
    page = _ops(ctx).list(f, limit=limit, cursor=cursor)
    if json:
        emit_json(page)
        return
    rows = [
        {
            **r,
            "last_seen": when_text(r["last_seen"]),
            "classification": _cls_text(r),
            "summary": (r.get("annotations") or {}).get("summary"),
            "acked": "yes" if r.get("acked_at") else "",
            "flapping": "yes" if r.get("flapping") else "",
            "silenced": (r.get("suppressed") or {}).get("state", ""),
        }
        for r in page["data"]
    ]
    print_table(
        rows,
        ["id", "alertname", "status", "severity", "last_seen", "classification", "flapping",
         "silenced", "acked", "summary"],
        title="alerts",
        wrap=("summary",),
        optional=("summary", "acked", "flapping", "silenced"),
    )  # fmt: skip
    if page.get("next_cursor"):
        typer.echo(f"more: --cursor {page['next_cursor']}", err=True)


@alerts_app.command("show")
def alerts_show(
    ctx: typer.Context,
    alert_id: Annotated[int, typer.Argument(help="The alert's id (from `llmgw alerts list`).")],
    json: Json = False,
) -> None:
    """Show one alert: labels, annotations, the AI classification, publications and the timeline."""
    record = _ops(ctx).show(alert_id)
    if json:
        emit_json(record)
        return
    out = typer.echo
    out(f"#{record['id']} {record['alertname']} [{record['status']}] severity={record['severity']}")
    out(f"  fingerprint {record['fingerprint']}  fired {record['fire_count']}x"
        f"{'  FLAPPING' if record['flapping'] else ''}")  # fmt: skip
    out(f"  started {when_text(record['starts_at'])}  ended {when_text(record['ends_at']) or '-'}")
    sup = record.get("suppressed")
    if sup:
        out(f"  {_suppressed_text(sup)} (Alertmanager, {when_text(sup.get('checked_at'))})")
    if record.get("acked_at"):
        out(f"  acknowledged by {record['acked_by']} at {when_text(record['acked_at'])}")
    if record.get("note"):
        out(f"  note: {record['note']}")
    out("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(record["labels"].items())))
    for k, v in sorted((record.get("annotations") or {}).items()):
        out(f"  {k}: {v}")
    cls = record.get("classification") or {}
    if cls.get("status") == "ok" and cls.get("severity"):
        out(f"AI-generated classification ({cls.get('model')}, prompt {cls.get('prompt_version')},"
            f" {when_text(cls.get('classified_at'))}):")  # fmt: skip
        out(f"  severity {cls['severity']}, category {cls.get('category')},"
            f" confidence {cls.get('confidence')}")  # fmt: skip
        out(f"  summary: {cls.get('summary')}")
        out(f"  probable cause: {cls.get('probable_cause')}")
        for rec in cls.get("recommendations") or []:
            out(f"  - {rec}")
    else:
        out(f"classification: {cls.get('status', 'pending')}")
    pubs = record.get("publications") or []
    if pubs:
        out("publications:")
    for p in pubs:
        ext = f" id={p['external_id']}" if p.get("external_id") else ""
        http = f" HTTP {p['http_status']}" if p.get("http_status") else ""
        err = f"  {p['error']}" if p.get("error") and p["state"] != "sent" else ""
        out(f"  {p['action']:<7} {p['target']} ({p['type']}): {p['state']}, {p['attempts']}"
            f" attempt(s){http}{ext}{err}")  # fmt: skip
    out("timeline:")
    for e in record.get("timeline", []):
        who = f" by {e['actor']}" if e.get("actor") else ""
        detail = ", ".join(f"{k}={v}" for k, v in (e.get("detail") or {}).items())
        out(f"  {when_text(e['at'])} {e['kind']}{who}{'  ' + detail if detail else ''}")


@alerts_app.command("stats")
def alerts_stats(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="Window: 1h, 24h, 7d...")] = "24h",
    by: Annotated[str, typer.Option("--by", help="Buckets of the series: hour or day.")] = "hour",
    json: Json = False,
) -> None:
    """Counts by status, severity, category and classification; the alerts that fired most."""
    start = (datetime.now(UTC) - parse_duration(since, param="--since")).isoformat()
    data = _ops(ctx).stats(since=start, by=by)
    if json:
        emit_json(data)
        return
    typer.echo(f"{data['total']} alerts since {when_text(data['since'])}")
    for group in ("status", "severity", "category", "classification"):
        counts = data[f"by_{group}"]
        typer.echo(f"  {group}: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "-"))
    if data["top_flapping"]:
        print_table(data["top_flapping"], ["alertname", "fingerprint", "fires", "flapping"],
                    title="fired most")  # fmt: skip


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    note: Annotated[
        str | None, typer.Option("--note", help="Why, or what you do.", show_default=False)
    ] = None,
    json: Json = False,
) -> None:
    """Acknowledge an alert (who and when go to its timeline and the audit log)."""
    record = _ops(ctx).ack(alert_id, note)
    if json:
        emit_json(record)
        return
    typer.echo(
        f"acknowledged #{alert_id} by {record['acked_by']} at {when_text(record['acked_at'])}"
    )


@alerts_app.command("note")
def alerts_note(
    ctx: typer.Context,
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    text: Annotated[str, typer.Argument(help="The note.")],
    json: Json = False,
) -> None:
    """Set an alert's note (the timeline keeps earlier ones)."""
    record = _ops(ctx).annotate(alert_id, text)
    if json:
        emit_json(record)
        return
    typer.echo(f"noted on #{alert_id}")


@alerts_app.command("reclassify")
def alerts_reclassify(
    ctx: typer.Context,
    alert_id: Annotated[int, typer.Argument(help="The alert's id.")],
    json: Json = False,
) -> None:
    """Queue a fresh AI classification of an alert (a running server's worker does it)."""
    record = _ops(ctx).reclassify(alert_id)
    if json:
        emit_json(record)
        return
    typer.echo(f"re-classification of #{alert_id} queued")


@alerts_app.command("test-fire")
def alerts_test_fire(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The server (default: the global --url, else server.host:port).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The alertname.")] = "LlmgwTestAlert",
    severity: Annotated[str, typer.Option("--severity", help="The severity label.")] = "warning",
    resolve: Annotated[bool, typer.Option("--resolve", help="Send it resolved.")] = False,
    json: Json = False,
) -> None:
    """Send a sample Alertmanager delivery to a server's /alerts/webhook (alerts.webhook_token)."""
    import httpx

    from llmgw.alerts.payload import am_fingerprint
    from llmgw.errors import AuthError, ConfigError, Unavailable
    from llmgw.errors import InvalidRequest as Bad

    st = state(ctx)
    s = st.settings
    if s.alerts.webhook_token is None:
        raise ConfigError(
            "alerts.webhook_token is not set",
            hint="set LLMGW_ALERTS__WEBHOOK_TOKEN or [alerts] webhook_token",
        )
    base = (url or st.url or f"http://{s.server.host}:{s.server.port}").rstrip("/")
    labels = {"alertname": name, "severity": severity, "job": "llmgw-test", "instance": "test"}
    now = datetime.now(UTC).replace(second=0, microsecond=0).isoformat().replace("+00:00", "Z")
    alert = {
        "status": "resolved" if resolve else "firing",
        "labels": labels,
        "annotations": {"summary": f"test alert {name} from llmgw alerts test-fire"},
        "startsAt": now,
        "endsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if resolve
        else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": am_fingerprint(labels),
    }
    body = {
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
        "status": alert["status"], "receiver": "llmgw-test", "groupLabels": {"alertname": name},
        "commonLabels": labels, "commonAnnotations": alert["annotations"],
        "externalURL": "llmgw-test-fire", "alerts": [alert],
    }  # fmt: skip
    token = s.alerts.webhook_token.get_secret_value()
    try:
        r = httpx.post(
            base + "/alerts/webhook",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )
    except httpx.TransportError:
        raise Unavailable(f"cannot reach {base}", hint="is `llmgw serve` running there?") from None
    if r.status_code in (401, 403):
        raise AuthError(
            f"the webhook at {base} refused the token ({r.status_code})",
            hint="give this command the server's alerts.webhook_token",
        )
    if r.status_code != 200:
        raise Bad(f"the webhook answered {r.status_code}: {r.text[:200]}")
    answer = r.json()
    if json:
        emit_json(answer)
        return
    typer.echo(
        f"sent {alert['status']} {name} to {base}: {answer.get('status')}"
        f"{' (a duplicate)' if answer.get('duplicate') else ''}, delivery "
        f"{answer.get('delivery_id')}, {answer.get('new', 0)} new, "
        f"{answer.get('resolved', 0)} resolved"
    )


@alerts_app.command("targets")
def alerts_targets(ctx: typer.Context, json: Json = False) -> None:
    """List the publishing targets (Slack, PagerDuty, Rootly): source (config or a Kubernetes
    Secret) and health. With --url the server's, else those configured here."""
    out = _ops(ctx).targets()
    if json:
        emit_json(out)
        return
    rows = [
        {
            **t,
            "mode": t.get("mode") or "-",
            "problem": t.get("disabled") or t.get("last_error") or "",
        }
        for t in out["data"]
    ]
    print_table(rows, ["name", "type", "source", "health", "mode", "problem"],
                title="publishing targets", wrap=("problem",))  # fmt: skip
    for key, why in (out.get("refused") or {}).items():
        typer.echo(f"refused {key}: {why}", err=True)


@alerts_app.command("publish-test")
def alerts_publish_test(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="The target's name (see `llmgw alerts targets`).")],
    json: Json = False,
) -> None:
    """Publish a test alert (LlmgwPublishTest, severity info) to one target, then resolve it.
    Exit 1 when the target did not take it."""
    out = _ops(ctx).publish_test(target)
    if json:
        emit_json(out)
    else:
        for part in ("fire", "resolve"):
            r = out.get(part)
            if r is not None:
                http = f" (HTTP {r['http_status']})" if r.get("http_status") else ""
                err = f": {r['error']}" if r.get("error") else ""
                typer.echo(f"{part}: {r['state']}{http}{err}")
    if not out.get("ok"):
        raise typer.Exit(1)
