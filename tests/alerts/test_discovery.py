"""Publishing targets from Kubernetes Secrets (llmgw.alerts.discovery, lightkube) against an
emulated API server speaking the real list/watch wire format (tests/alerts/kubeapi.py):
live add/change/delete within 2 s, a 410 mid-watch re-lists, errors back off and recover,
kubeconfig and in-cluster config, and secret values never logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgw.alerts.discovery import SecretDiscovery, decode_secret, parse_selector
from llmgw.alerts.publishers.targets import TargetSet
from llmgw.config import KubernetesDiscoverySettings
from llmgw.emulators.runner import RunningServer, serve_in_thread
from tests.alerts.kubeapi import KubeApi, create_app, matches

LABEL = {"alert-svc.io/publisher": "true"}
PD_KEY = "0123456789abcdef0123456789abcdef"
SECRET_VALUES = (PD_KEY, "xoxb-secret-bot-token", "rootly-secret-api-key")


@pytest.fixture
def kube() -> Iterator[tuple[RunningServer, KubeApi]]:
    app = create_app()
    with serve_in_thread(app) as srv:
        yield srv, app.state.api


def _kubeconfig(tmp_path: Path, url: str, token: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{url}"}}}}]
users: [{{name: bot, user: {{token: "{token}"}}}}]
contexts: [{{name: emu, context: {{cluster: emu, user: bot, namespace: alerting}}}}]
current-context: emu
""")
    return path


def _settings(
    tmp_path: Path, url: str, token: str = "test-token", **kw: Any
) -> KubernetesDiscoverySettings:
    return KubernetesDiscoverySettings(
        enabled=True, namespaces=kw.pop("namespaces", ["alerting"]),
        kubeconfig=_kubeconfig(tmp_path, url, token), backoff_max_seconds=0.2, **kw,
    )  # fmt: skip


async def _until(cond: Callable[[], bool], within: float = 2.0) -> float:
    """Seconds until ``cond()`` holds (fails after ``within`` seconds)."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def _names(ts: TargetSet) -> dict[str, str]:
    return {t.name: t.source for t in ts.all()}


async def test_secrets_added_changed_deleted_change_the_live_targets_within_2s(
    kube: tuple[RunningServer, KubeApi], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv, api = kube
    caplog.set_level(logging.DEBUG)
    api.put(
        "alerting", "pd-db", {"type": "pagerduty", "name": "pd-db", "routing_key": PD_KEY}, LABEL
    )
    api.put("alerting", "unlabelled", {"type": "pagerduty", "routing_key": PD_KEY})
    api.put("other", "pd-other", {"type": "pagerduty", "routing_key": PD_KEY}, LABEL)
    live = TargetSet()
    disc = SecretDiscovery(
        _settings(tmp_path, srv.url), lambda t: live.set_discovered_targets("kubernetes", t)
    )
    disc.start()
    try:
        await asyncio.wait_for(disc.synced.wait(), 5)
        assert _names(live) == {"pd-db": "kubernetes:alerting/pd-db"}  # label and namespace apply
        timings = {}
        # Added: a Slack bot target without a `name` key takes the Secret's name.
        api.put("alerting", "slack-db", {"type": "slack", "bot_token": "xoxb-secret-bot-token",
                                         "channel": "C0123456789"}, LABEL)  # fmt: skip
        timings["added"] = await _until(lambda: "slack-db" in _names(live))
        # Changed: the channel moves; the live target has the new data.
        api.put("alerting", "slack-db", {"type": "slack", "bot_token": "xoxb-secret-bot-token",
                                         "channel": "C0NEWCHAN01"}, LABEL)  # fmt: skip
        timings["changed"] = await _until(
            lambda: (t := live.get("slack-db")) is not None and t.target.channel == "C0NEWCHAN01"
        )
        # Deleted, and a label removed: both leave the set.
        api.delete("alerting", "slack-db")
        timings["deleted"] = await _until(lambda: "slack-db" not in _names(live))
        api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": PD_KEY}, {"team": "db"})
        timings["unlabelled"] = await _until(lambda: _names(live) == {})
        api.put("alerting", "rootly", {"type": "rootly", "api_key": "rootly-secret-api-key",
                                       "base_url": "http://127.0.0.1:9"}, LABEL)  # fmt: skip
        timings["added again"] = await _until(lambda: "rootly" in _names(live))
        print("discovery latencies (s):", {k: round(v, 3) for k, v in timings.items()})
        assert all(v < 2 for v in timings.values())
        assert api.list_calls == 1  # all of it came through the watch, from the listed version
        assert any("resourceVersion=" in r and "watch=true" in r for r in api.requests)
        assert all("labelSelector=alert-svc.io%2Fpublisher%3Dtrue" in r for r in api.requests)
    finally:
        await disc.aclose()
    for value in SECRET_VALUES:
        assert value not in caplog.text


async def test_a_410_mid_watch_triggers_a_relist(
    kube: tuple[RunningServer, KubeApi], tmp_path: Path
) -> None:
    srv, api = kube
    api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": PD_KEY}, LABEL)
    seen: list[dict[str, dict[str, str]]] = []
    disc = SecretDiscovery(_settings(tmp_path, srv.url), seen.append)
    disc.start()
    try:
        await asyncio.wait_for(disc.synced.wait(), 5)
        await _until(lambda: api.watch_calls == 1)
        # A change the watch never sees (compacted away): the open watch gets a 410 ERROR
        # event mid-stream, and only a re-list can find the change.
        api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": PD_KEY, "min_severity": "critical"},
                LABEL, event=False)  # fmt: skip
        took = await _until(
            lambda: disc.targets.get("alerting/pd-db", {}).get("min_severity") == "critical"
        )
        assert api.list_calls == 2 and took < 2
        assert disc.errors == 0  # a 410 is not an error: no backoff
        # After the re-list the watch resumes from the new version.
        api.delete("alerting", "pd-db")
        await _until(lambda: disc.targets == {})
        assert seen[-1] == {} and api.list_calls == 2
    finally:
        await disc.aclose()


async def test_errors_back_off_keep_the_targets_and_recover(
    kube: tuple[RunningServer, KubeApi], tmp_path: Path
) -> None:
    srv, api = kube
    api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": PD_KEY}, LABEL)
    disc = SecretDiscovery(_settings(tmp_path, srv.url, resync_seconds=5), lambda _t: None)
    disc.start()
    try:
        await asyncio.wait_for(disc.synced.wait(), 5)
        api.token = "rotated"  # every request now answers 401: reconnect with backoff
        api.expire()
        await _until(lambda: disc.errors >= 2)
        assert "alerting/pd-db" in disc.targets  # the last known set stays in effect
        api.token = "test-token"
        api.put("alerting", "pd-2", {"type": "pagerduty", "routing_key": PD_KEY}, LABEL)
        await _until(lambda: "alerting/pd-2" in disc.targets, within=3)
    finally:
        await disc.aclose()


async def test_in_cluster_config_uses_the_service_account(
    tls_upstream: Callable[[Any], tuple[str, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(KubeApi(token="sa-token-from-file"))
    api: KubeApi = app.state.api
    api.put("monitoring", "pd", {"type": "pagerduty", "routing_key": PD_KEY}, LABEL)
    url, ca = tls_upstream(app)
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("sa-token-from-file")
    (sa / "namespace").write_text("monitoring")
    (sa / "ca.crt").write_bytes(ca.read_bytes())
    host, port = url.removeprefix("https://").split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    settings = KubernetesDiscoverySettings(enabled=True)  # no namespaces: the pod's own
    disc = SecretDiscovery(settings, lambda _t: None, service_account=sa)
    assert disc.namespaces() == ["monitoring"]
    disc.start()
    try:
        await asyncio.wait_for(disc.synced.wait(), 5)
        assert disc.targets == {
            "monitoring/pd": {"type": "pagerduty", "routing_key": PD_KEY, "name": "pd"}
        }
    finally:
        await disc.aclose()


def test_selector_syntax_and_decoding() -> None:
    from lightkube.core.selector import build_selector

    sel = "alert-svc.io/publisher=true,team in (db, web),!legacy,env!=dev,tier notin (x),owner"
    assert build_selector(parse_selector(sel)) == (
        "alert-svc.io/publisher=true,team in (db,web),!legacy,env!=dev,tier notin (x),owner"
    )
    with pytest.raises(ValueError, match="invalid label selector"):
        parse_selector("a=b=c")
    assert matches(
        sel, {"alert-svc.io/publisher": "true", "team": "db", "env": "prod", "owner": "x"}
    )
    assert not matches(
        sel, {"alert-svc.io/publisher": "true", "team": "db", "legacy": "1", "owner": "x"}
    )
    assert decode_secret("pd", {"type": "cGFnZXJkdXR5"}) == {"type": "pagerduty", "name": "pd"}
    assert decode_secret("pd", {"type": "//79"}) is None  # not UTF-8 text
    with pytest.raises(ValueError, match="label selector"):  # a config error at start-up
        KubernetesDiscoverySettings(label_selector="a in b")
    with pytest.raises(ValueError, match="empty"):
        parse_selector(" ")


async def test_llmgw_serve_applies_discovered_secrets_live(
    kube: tuple[RunningServer, KubeApi], tmp_path: Path, alert_settings: Callable[..., Any],
    hook_auth: dict[str, str],
) -> None:  # fmt: skip
    """``[alerts.kubernetes]`` on a running gateway: the publishing target set follows the
    Secrets, and an alert goes to the PagerDuty emulator with the routing key of the Secret."""
    import httpx

    from llmgw.emulators import pagerduty
    from llmgw.server import create_app as create_gateway
    from tests.alerts.amdata import am_alert, am_payload

    srv, api = kube
    other_key = "f" * 32
    with serve_in_thread(pagerduty.create_app()) as pd:
        events_url = f"{pd.url}/v2/enqueue"
        api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": PD_KEY,
                                      "events_url": events_url}, LABEL)  # fmt: skip
        settings = alert_settings(
            f"sqlite:///{tmp_path / 'a.db'}", mode="transparent",
            kubernetes=_settings(tmp_path, srv.url).model_dump(),
            targets=[{"type": "slack", "name": "slack-config", "webhook_url": "http://127.0.0.1:9/services/T1/B1/X",
                      "match_labels": {"team": "nobody"}}],
        )  # fmt: skip
        app = create_gateway(settings)
        async with app.router.lifespan_context(app):
            service = app.state.gateway.alerts
            targets = lambda: _names(service.publishing.targets)  # noqa: E731
            await _until(
                lambda: (
                    targets() == {"slack-config": "config", "pd-db": "kubernetes:alerting/pd-db"}
                ),
                5,
            )
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://llmgw"
            )
            async with client:
                sent = await client.post(
                    "/alerts/webhook", json=am_payload(am_alert("DiskFull")), headers=hook_auth
                )
                assert sent.status_code == 200
                pd_emu = pd.app.state.emulator
                await _until(lambda: len(pd_emu.recorder.select()) == 1, 10)
                assert pd_emu.recorder.select()[0].body["routing_key"] == PD_KEY
                # The Secret's routing key changes: the next alert uses the new one.
                api.put("alerting", "pd-db", {"type": "pagerduty", "routing_key": other_key,
                                              "events_url": events_url}, LABEL)  # fmt: skip
                await _until(lambda: (t := service.publishing.targets.get("pd-db")) is not None
                             and t.target.routing_key.get_secret_value() == other_key)  # fmt: skip
                sent = await client.post(
                    "/alerts/webhook", json=am_payload(am_alert("MemFull")), headers=hook_auth
                )
                await _until(lambda: len(pd_emu.recorder.select()) == 2, 10)
                assert pd_emu.recorder.select()[1].body["routing_key"] == other_key
            api.put("alerting", "bad", {"type": "slack"}, LABEL)  # invalid data: refused, named
            await _until(lambda: "kubernetes:alerting/bad" in service.publishing.targets.problems)
            api.delete("alerting", "pd-db")
            assert await _until(lambda: "pd-db" not in targets()) < 2
        assert service.discovery is not None and service.discovery._task is None  # stopped


def test_the_emulated_api_server_speaks_the_list_watch_wire_format(
    kube: tuple[RunningServer, KubeApi],
) -> None:
    """What the tests above rely on, as bytes on the wire (reference §5.5)."""
    import json

    import httpx

    srv, api = kube
    api.put("alerting", "pd", {"type": "pagerduty"}, LABEL)
    auth = {"Authorization": "Bearer test-token"}
    url = f"{srv.url}/api/v1/namespaces/alerting/secrets"
    assert httpx.get(url).json()["code"] == 401
    listed = httpx.get(
        url, params={"labelSelector": "alert-svc.io/publisher=true"}, headers=auth
    ).json()
    assert (listed["kind"], listed["apiVersion"]) == ("SecretList", "v1")
    [item] = listed["items"]
    assert item["data"] == {"type": "cGFnZXJkdXR5"} and "kind" not in item  # base64, as the API
    rv = listed["metadata"]["resourceVersion"]
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1",
              "labelSelector": "alert-svc.io/publisher=true"}  # fmt: skip
    api.put("alerting", "pd", {"type": "pagerduty", "name": "x"}, LABEL)
    api.put("alerting", "pd", {"type": "pagerduty"}, {"other": "x"})  # leaves the selector
    with httpx.stream("GET", url, params=params, headers=auth) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert [(e["type"], e["object"]["kind"]) for e in events] == [
        ("MODIFIED", "Secret"),
        ("DELETED", "Secret"),
    ]
    api.expire()
    with httpx.stream("GET", url, params=params, headers=auth) as r:
        [error] = [json.loads(line) for line in r.iter_lines() if line]
    assert error["type"] == "ERROR"
    assert (error["object"]["kind"], error["object"]["code"], error["object"]["reason"]) == (
        "Status",
        410,
        "Expired",
    )
