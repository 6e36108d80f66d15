"""The Slack, PagerDuty and Rootly emulators against the official clients (``slack_sdk``, the
``pagerduty`` package) and plain httpx, over real HTTP on loopback: wire shapes, errors, rate
limits, fault switches and the received log."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pagerduty
import pytest
from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError

from llmgw.emulators import pagerduty as pd_emu
from llmgw.emulators import rootly as rootly_emu
from llmgw.emulators import slack as slack_emu
from llmgw.emulators.runner import RunningServer, serve_in_thread

HOOK = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
CHANNEL = "C0123456789"
KEY = pd_emu.DEFAULT_ROUTING_KEY


@pytest.fixture
def slack() -> Iterator[RunningServer]:
    with serve_in_thread(slack_emu.create_app()) as srv:
        yield srv


@dataclass
class Https:
    """An emulator served over https (the ``pagerduty`` package refuses plain http)."""

    url: str
    app: Any
    ca: Path
    opened: list[Any] = field(default_factory=list)

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def http(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, verify=self.ssl(), timeout=5)
        self.opened.append(client)
        return client


@pytest.fixture
def pd(tls_upstream: Callable[[Any], tuple[str, Path]]) -> Iterator[Https]:
    app = pd_emu.create_app(hang_seconds=0.8)
    url, ca = tls_upstream(app)
    srv = Https(url, app, ca)
    yield srv
    for client in srv.opened:
        client.close()


@pytest.fixture
def rootly() -> Iterator[RunningServer]:
    with serve_in_thread(rootly_emu.create_app()) as srv:
        yield srv


def _web(srv: RunningServer, token: str = slack_emu.DEFAULT_BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=f"{srv.url}/api/", timeout=5)


# -- Slack ---------------------------------------------------------------------------------------


def test_slack_webhook_client_posts_and_sees_slack_errors(slack: RunningServer) -> None:
    hook = WebhookClient(f"{slack.url}{HOOK}", timeout=5)
    ok = hook.send(
        text="[FIRING] HighCPU",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*CPU*"}}],
    )
    assert (ok.status_code, ok.body) == (200, "ok")
    empty = hook.send_dict({"username": "x"})
    assert (empty.status_code, empty.body) == (400, "no_text")
    unknown = WebhookClient(f"{slack.url}/services/nope", timeout=5).send(text="x")
    assert (unknown.status_code, unknown.body) == (404, "no_service")
    slack.app.state.emulator.archived.add(HOOK)
    assert (hook.send(text="x").status_code, hook.send(text="x").body) == (
        410,
        "channel_is_archived",
    )
    r = httpx.post(f"{slack.url}{HOOK.replace('B0', 'B1')}", content=b"{not json")
    assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (
        400,
        "invalid_payload",
        "text/html",
    )
    received = httpx.get(f"{slack.url}/_emulator/received").json()["received"]
    assert received[0]["body"]["text"] == "[FIRING] HighCPU" and received[0]["status"] == 200
    assert [r["status"] for r in received] == [200, 400, 404, 410, 410, 400]


def test_slack_web_client_posts_threads_and_updates(slack: RunningServer) -> None:
    client = _web(slack)
    first = client.chat_postMessage(channel=CHANNEL, text="[FIRING] HighCPU")
    assert first["ok"] and first["channel"] == CHANNEL
    reply = client.chat_postMessage(
        channel=CHANNEL, text="[RESOLVED] HighCPU", thread_ts=first["ts"]
    )
    assert float(reply["ts"]) > float(first["ts"]) and reply["message"]["thread_ts"] == first["ts"]
    updated = client.chat_update(
        channel=CHANNEL, ts=first["ts"], text="[RESOLVED] HighCPU (was firing)"
    )
    assert updated["ts"] == first["ts"] and updated["text"] == "[RESOLVED] HighCPU (was firing)"
    emu: slack_emu.SlackEmulator = slack.app.state.emulator
    parent = emu.find(CHANNEL, first["ts"])
    assert (
        parent is not None
        and parent.edited == 1
        and parent.history[0]["text"] == "[FIRING] HighCPU"
    )
    assert [m.text for m in emu.thread(CHANNEL, first["ts"])] == ["[RESOLVED] HighCPU"]
    # The received log never keeps the token.
    log = httpx.get(f"{slack.url}/_emulator/received", params={"path": "/api/chat.update"}).json()
    assert log["received"][0]["headers"]["authorization"] == "Bearer [redacted]"
    assert slack_emu.DEFAULT_BOT_TOKEN not in httpx.get(f"{slack.url}/_emulator/received").text


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
@pytest.mark.parametrize(
    ("kwargs", "token", "error"),
    [
        ({"channel": CHANNEL, "text": "x"}, "xoxb-wrong", "invalid_auth"),
        ({"channel": "general", "text": "x"}, None, "channel_not_found"),
        ({"channel": CHANNEL}, None, "no_text"),
        (
            {"channel": CHANNEL, "text": "x", "blocks": [{"type": "divider"}] * 51},
            None,
            "invalid_blocks",
        ),
    ],
)
def test_slack_web_api_errors_are_http_200_ok_false(
    slack: RunningServer, kwargs: dict[str, Any], token: str | None, error: str
) -> None:
    with pytest.raises(SlackApiError) as exc:
        _web(slack, token or slack_emu.DEFAULT_BOT_TOKEN).chat_postMessage(**kwargs)
    assert exc.value.response.status_code == 200
    assert exc.value.response["error"] == error


def test_slack_rate_limit_is_per_channel_with_retry_after(slack: RunningServer) -> None:
    client = _web(slack)
    for _ in range(4):  # the burst
        client.chat_postMessage(channel=CHANNEL, text="x")
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel=CHANNEL, text="x")
    assert exc.value.response.status_code == 429
    assert exc.value.response["error"] == "ratelimited"
    assert int(exc.value.response.headers["Retry-After"]) >= 1
    assert client.chat_postMessage(channel="C0OTHER0001", text="x")["ok"]  # another channel
    time.sleep(1.05)
    assert client.chat_postMessage(channel=CHANNEL, text="x")["ok"]  # one a second again


def test_slack_fault_switch_over_http(slack: RunningServer) -> None:
    r = httpx.post(
        f"{slack.url}/_emulator/fault", json={"fault": "429", "count": 1, "retry_after": 3}
    )
    assert r.json()["fault"] == "429"
    hook = WebhookClient(f"{slack.url}{HOOK}", timeout=5)
    limited = hook.send(text="x")
    assert limited.status_code == 429 and limited.headers["Retry-After"] in ("3", ["3"])
    assert hook.send(text="x").body == "ok"  # count ran out
    httpx.post(f"{slack.url}/_emulator/fault", json={"fault": "500"})
    assert (hook.send(text="x").status_code, hook.send(text="x").body) == (500, "rollup_error")
    with pytest.raises(SlackApiError) as exc:
        _web(slack).chat_postMessage(channel=CHANNEL, text="x")
    assert exc.value.response.status_code == 500
    httpx.delete(f"{slack.url}/_emulator/fault")
    assert hook.send(text="x").body == "ok"
    bad = httpx.post(f"{slack.url}/_emulator/fault", json={"fault": "418"})
    assert bad.status_code == 400 and "429" in bad.json()["faults"]


# -- PagerDuty -----------------------------------------------------------------------------------


def _pd(srv: Https, key: str = KEY) -> pagerduty.EventsApiV2Client:
    client = pagerduty.EventsApiV2Client(key, base_url=srv.url, verify=srv.ssl())
    srv.opened.append(client)
    client.sleep_timer = 0.05  # the package's own retry pause, shortened for the test
    return client


def test_pagerduty_client_triggers_and_resolves_one_alert(pd: Https) -> None:
    client = _pd(pd)
    dedup = client.trigger(
        "[critical] HighCPU",
        "node1:9100",
        dedup_key="am-03e24befa7b11611",
        severity="critical",
        custom_details={"labels": {"alertname": "HighCPU"}},
    )
    assert dedup == "am-03e24befa7b11611"
    assert client.trigger("again", "node1:9100", dedup_key=dedup) == dedup  # joins the open alert
    assert client.resolve(dedup) == dedup
    assert client.resolve(dedup) == dedup  # 202 again; dropped: nothing open
    generated = client.trigger("no key given", "node2")
    assert len(generated) == 32 and generated != dedup
    state = pd.http().get(f"{pd.url}/_emulator/state").json()
    first = state["alerts"][0]
    assert (first["dedup_key"], first["status"], first["events"]) == (
        dedup,
        "resolved",
        ["trigger", "trigger", "resolve"],
    )
    assert state["dropped"] == [{"routing_key": KEY, "dedup_key": dedup, "event_action": "resolve"}]
    received = pd.http().get(f"{pd.url}/_emulator/received").json()["received"]
    assert [r["body"]["event_action"] for r in received] == [
        "trigger",
        "trigger",
        "resolve",
        "resolve",
        "trigger",
    ]
    assert all(r["status"] == 202 for r in received)


def test_pagerduty_invalid_events_get_the_documented_400(pd: Https) -> None:
    r = pd.http().post(
        f"{pd.url}/v2/enqueue",
        json={
            "routing_key": "short",
            "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "fatal"},
        },
    )
    body = r.json()
    assert (
        r.status_code == 400
        and body["status"] == "invalid event"
        and body["message"] == "Event object is invalid"
    )
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in body["errors"]
    assert any("payload.severity" in e for e in body["errors"])
    with pytest.raises(pagerduty.Error) as exc:
        _pd(pd).trigger("", "node1")
    assert exc.value.response is not None and exc.value.response.status_code == 400
    big = pd.http().post(
        f"{pd.url}/v2/enqueue",
        json={
            "routing_key": KEY,
            "event_action": "trigger",
            "payload": {
                "summary": "s",
                "source": "h",
                "severity": "info",
                "custom_details": {"x": "y" * 600_000},
            },
        },
    )
    assert big.status_code == 400


def test_pagerduty_rate_limit_per_routing_key() -> None:
    with serve_in_thread(pd_emu.create_app(rate_limit=3)) as srv:
        send = lambda key: httpx.post(f"{srv.url}/v2/enqueue", json={  # noqa: E731
            "routing_key": key, "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "info"}})  # fmt: skip
        assert [send(KEY).status_code for _ in range(4)] == [202, 202, 202, 429]
        assert send("f" * 32).status_code == 202  # another integration key has its own window
        limited = send(KEY)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_pagerduty_faults_and_the_official_client_retry(pd: Https) -> None:
    emu: pd_emu.PagerDutyEmulator = pd.app.state.emulator
    emu.faults.set("500", count=1)
    assert _pd(pd).trigger("s", "h", dedup_key="k1") == "k1"  # the package retries a 500
    emu.faults.set("429", count=2)
    assert _pd(pd).trigger("s", "h", dedup_key="k2") == "k2"  # and a 429
    statuses = [r.status for r in emu.recorder.select()]
    assert statuses == [500, 202, 429, 429, 202]
    emu.faults.set("400", count=1)
    r = pd.http().post(
        f"{pd.url}/v2/enqueue",
        json={"routing_key": KEY, "event_action": "resolve", "dedup_key": "k1"},
    )
    assert r.status_code == 400 and r.json()["status"] == "invalid event"
    emu.faults.set("timeout", count=1)  # hang_seconds=0.8 in this fixture
    with pytest.raises(httpx.ReadTimeout):
        pd.http().post(f"{pd.url}/v2/enqueue", json={}, timeout=0.3)


# -- Rootly --------------------------------------------------------------------------------------


def _rootly(srv: RunningServer, key: str = rootly_emu.DEFAULT_API_KEY) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=5, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/vnd.api+json"})  # fmt: skip


def test_rootly_create_then_resolve_by_stored_id(rootly: RunningServer) -> None:
    with _rootly(rootly) as c:
        attrs = {
            "source": "alertmanager",
            "summary": "HighCPU on node1:9100",
            "deduplication_key": "am-1",
            "labels": [{"key": "severity", "value": "critical"}],
            "data": {"fingerprint": "03e2"},
        }
        r = c.post("/v1/alerts", json={"data": {"type": "alerts", "attributes": attrs}})
        assert r.status_code == 201 and r.headers["content-type"] == "application/vnd.api+json"
        alert = r.json()["data"]
        assert alert["type"] == "alerts" and alert["attributes"]["short_id"].startswith("ALRT")
        assert alert["attributes"]["status"] == "triggered"
        done = c.post(
            f"/v1/alerts/{alert['id']}/resolve",
            json={
                "data": {"type": "alerts", "attributes": {"resolution_message": "Resolved by AM"}}
            },
        )
        assert done.status_code == 200 and done.json()["data"]["attributes"]["status"] == "resolved"
        assert c.post("/v1/alerts/nope/resolve").status_code == 404
        listed = c.get("/v1/alerts", params={"filter[status]": "resolved"}).json()
        assert [a["id"] for a in listed["data"]] == [alert["id"]] and listed["meta"][
            "total_count"
        ] == 1
    received = httpx.get(f"{rootly.url}/_emulator/received").json()["received"]
    assert [(r["path"].rsplit("/", 1)[-1], r["status"], r["note"]) for r in received] == [
        ("alerts", 201, "created"),
        ("resolve", 200, "resolved"),
        ("resolve", 404, "resolve: unknown id"),
    ]


def test_rootly_auth_and_validation_errors_are_jsonapi(rootly: RunningServer) -> None:
    body = {"data": {"type": "alerts", "attributes": {"source": "alertmanager", "summary": "s"}}}
    with _rootly(rootly, "wrong") as c:
        r = c.post("/v1/alerts", json=body)
    assert r.status_code == 401 and r.json()["errors"][0]["status"] == "401"
    with _rootly(rootly) as c:
        bad = c.post(
            "/v1/alerts",
            json={
                "data": {"type": "alerts", "attributes": {"source": "prometheus", "summary": "s"}}
            },
        )
        assert bad.status_code == 422 and "Source" in bad.json()["errors"][0]["detail"]
        missing = c.post(
            "/v1/alerts", json={"data": {"type": "alerts", "attributes": {"source": "api"}}}
        )
        assert (
            missing.status_code == 422
            and missing.json()["errors"][0]["detail"] == "Summary can't be blank"
        )
        emu: rootly_emu.RootlyEmulator = rootly.app.state.emulator
        emu.faults.set("429", count=1, retry_after=2)
        limited = c.post("/v1/alerts", json=body)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        emu.faults.set("500", count=1)
        assert c.post("/v1/alerts", json=body).status_code == 500
        emu.strict_content_type = True
        plain = c.post("/v1/alerts", json=body, headers={"Content-Type": "application/json"})
        assert plain.status_code == 415
        assert c.post("/v1/alerts", json=body).status_code == 201


def test_rootly_generic_webhook_resolves_by_identifier(rootly: RunningServer) -> None:
    url = f"{rootly.url}/webhooks/incoming/generic_webhooks"
    assert httpx.post(url, json={"id": "a1", "title": "x"}).status_code == 401
    auth = {"Authorization": f"Bearer {rootly_emu.DEFAULT_WEBHOOK_SECRET}"}
    assert (
        httpx.post(
            url, json={"id": "a1", "title": "HighCPU", "state": "firing"}, headers=auth
        ).json()["note"]
        == "created"
    )
    assert (
        httpx.post(url, json={"id": "a1", "state": "resolved"}, headers=auth).json()["note"]
        == "resolved"
    )
    [alert] = httpx.get(f"{rootly.url}/_emulator/state").json()["alerts"]
    assert (
        alert["attributes"]["status"] == "resolved" and alert["attributes"]["summary"] == "HighCPU"
    )


def test_rootly_official_sdk_creates_and_resolves(rootly: RunningServer) -> None:
    from rootly_sdk import AuthenticatedClient
    from rootly_sdk.api.alerts import create_alert, resolve_alert
    from rootly_sdk.models import AlertResponse, ErrorsList, NewAlert, ResolveAlert

    with AuthenticatedClient(base_url=rootly.url, token=rootly_emu.DEFAULT_API_KEY) as client:
        body = NewAlert.from_dict({"data": {"type": "alerts", "attributes": {
            "source": "alertmanager", "summary": "HighCPU", "deduplication_key": "am-1",
            "labels": [{"key": "severity", "value": "critical"}]}}})  # fmt: skip
        created = create_alert.sync(client=client, body=body)
        assert isinstance(created, AlertResponse)
        assert created.data.attributes.summary == "HighCPU" and created.data.attributes.short_id
        resolve = ResolveAlert.from_dict(
            {"data": {"type": "alerts", "attributes": {"resolution_message": "ok"}}}
        )
        done = resolve_alert.sync(created.data.id, client=client, body=resolve)
        assert isinstance(done, AlertResponse) and done.data.attributes.status == "resolved"
    with AuthenticatedClient(base_url=rootly.url, token="wrong") as client:
        assert isinstance(create_alert.sync(client=client, body=body), ErrorsList)
