"""``/api/alerts`` on a real uvicorn server and ``llmgw alerts`` in both modes (local database,
``--url``): the same records, admin only (AUTH-6), changes in the timeline and the audit log."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings
from llmgw.emulators.runner import serve_in_thread
from llmgw.server import create_app
from llmgw.storage.db import make_engine
from tests.alerts.amdata import WEBHOOK_TOKEN, am_alert, am_payload, later

API_PATHS = [
    ("GET", "/api/alerts"),
    ("GET", "/api/alerts/stats"),
    ("GET", "/api/alerts/health"),
    ("GET", "/api/alerts/1"),
    ("GET", "/api/alerts/1/delivery"),
    ("POST", "/api/alerts/1/ack"),
    ("POST", "/api/alerts/1/note"),
    ("POST", "/api/alerts/1/reclassify"),
]


@pytest.fixture
def server(
    home: Any, classifying_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str, Settings]]:
    db_url = f"sqlite:///{home / 'llmgw.db'}"
    settings = classifying_settings(db_url)
    srv = serve_in_thread(create_app(settings))
    yield srv, db_url, settings
    srv.stop()


def _keys(db_url: str) -> tuple[str, str]:
    eng = make_engine(db_url)
    local = LocalAdmin(eng, Actor.local())
    local.users_create("ops@example.com", role="admin")
    admin = str(local.keys_create("ops", user="ops@example.com")["key"])
    local.users_create("bob@example.com")
    user = str(local.keys_create("bob", user="bob@example.com")["key"])
    eng.dispose()
    return admin, user


def _wait_classified(http: httpx.Client, auth: dict[str, str], n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        data = http.get("/api/alerts", params={"classification": "ok"}, headers=auth).json()["data"]
        if len(data) >= n:
            return list(data)
        assert time.monotonic() < deadline, "not classified in time"
        time.sleep(0.1)


def test_api_and_cli_on_a_real_server(
    server: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, db_url, _ = server
    admin, user = _keys(db_url)
    auth = {"Authorization": f"Bearer {admin}"}
    hook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        # AUTH-6: no key 401, a non-admin key 403, on every alert route
        for method, path in API_PATHS:
            assert http.request(method, path).status_code == 401, path
            r = http.request(method, path, headers={"Authorization": f"Bearer {user}"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required", path
        # three occurrences: HighCPU fired twice (the second still firing), DiskFull once
        sent = [
            am_payload(am_alert(starts=later(0))),
            am_payload(am_alert(status="resolved", starts=later(0), ends=later(60))),
            am_payload(
                am_alert(starts=later(600)), am_alert("DiskFull", labels={"severity": "warning"})
            ),
        ]
        for body in sent:
            assert http.post("/alerts/webhook", json=body, headers=hook).status_code == 200
        rows = _wait_classified(http, auth, 3)
        assert [a["alertname"] for a in rows].count("HighCPU") == 2
        for a in rows:
            assert a["classification"]["ai_generated"] is True
            assert a["view"]["mode"] == "enriched" and a["view"]["classified"] is True
        # filters and cursor pagination
        page = http.get("/api/alerts", params={"status": "firing", "limit": 1}, headers=auth).json()
        assert len(page["data"]) == 1 and page["next_cursor"]
        rest = http.get(
            "/api/alerts", params={"status": "firing", "limit": 1, "cursor": page["next_cursor"]},
            headers=auth,
        ).json()  # fmt: skip
        assert len(rest["data"]) == 1 and rest["next_cursor"] is None
        assert {page["data"][0]["id"], rest["data"][0]["id"]} == {
            r["id"] for r in rows if r["status"] == "firing"
        }
        found = http.get("/api/alerts", params={"q": "diskfull"}, headers=auth).json()["data"]
        assert [a["alertname"] for a in found] == ["DiskFull"]
        found = http.get("/api/alerts", params={"label": "severity=warning"}, headers=auth).json()
        assert [a["alertname"] for a in found["data"]] == ["DiskFull"]
        bad = http.get("/api/alerts", params={"status": "sleeping"}, headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
        assert http.get("/api/alerts", params={"cursor": "x"}, headers=auth).status_code == 400
        assert http.get("/api/alerts/999999", headers=auth).status_code == 404
        resolved = next(r for r in rows if r["status"] == "resolved")
        one = http.get(f"/api/alerts/{resolved['id']}", headers=auth).json()
        assert [e["kind"] for e in one["timeline"]][:2] == ["fired", "resolved"]
        raw = http.get(f"/api/alerts/{resolved['id']}/delivery", headers=auth).json()
        assert raw["payload"]["version"] == "4"
        stats = http.get("/api/alerts/stats", headers=auth).json()
        assert stats["by_status"] == {"firing": 2, "resolved": 1}
        assert stats["top_flapping"][0]["alertname"] == "HighCPU"
        deadline = time.monotonic() + 30  # publishing follows classification (no targets here)
        while True:
            health = http.get("/api/alerts/health", headers=auth).json()
            if health["queue"]["pending"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert health["worker"] == "running" and health["queue"]["pending"] == 0
        acked = http.post(
            f"/api/alerts/{resolved['id']}/ack", json={"note": "on it"}, headers=auth
        ).json()
        assert acked["acked_by"] == "ops@example.com" and acked["note"] == "on it"
        assert (
            http.post(f"/api/alerts/{resolved['id']}/note", json={}, headers=auth).status_code
            == 400
        )
        again = http.post(f"/api/alerts/{resolved['id']}/reclassify", headers=auth).json()
        assert again["classification"]["status"] == "pending"
        _wait_classified(http, auth, 3)

    # the CLI: local mode and --url give the same records
    monkeypatch.setenv("LLMGW_DATABASE_URL", db_url)
    local = cli("alerts", "list", "--json")
    assert local.exit_code == 0, local.stderr
    remote = cli("--url", srv.url, "--token", admin, "alerts", "list", "--json")
    assert remote.exit_code == 0, remote.stderr
    # identical --json, the processing mode's `view` included
    assert json.loads(local.stdout) == json.loads(remote.stdout)
    assert json.loads(local.stdout)["data"][0]["view"]["mode"] == "enriched"
    one = ("alerts", "show", str(resolved["id"]), "--json")
    shown = cli(*one), cli("--url", srv.url, "--token", admin, *one)
    assert all(r.exit_code == 0 for r in shown), [r.stderr for r in shown]
    assert json.loads(shown[0].stdout) == json.loads(shown[1].stdout)
    counts = cli("alerts", "stats", "--json"), cli("--url", srv.url, "--token", admin,
                                                     "alerts", "stats", "--json")  # fmt: skip
    assert [{k: v for k, v in json.loads(c.stdout).items() if k != "since"} for c in counts][0] == {
        k: v for k, v in json.loads(counts[1].stdout).items() if k != "since"
    }
    again = cli("--url", srv.url, "--token", admin, "alerts", "reclassify", str(resolved["id"]),
                "--json")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["classification"]["status"] == "pending"
    acked = cli("--url", srv.url, "--token", admin, "alerts", "ack", str(rows[1]["id"]), "--json")
    assert acked.exit_code == 0 and json.loads(acked.stdout)["acked_by"] == "ops@example.com"
    with httpx.Client(base_url=srv.url, timeout=10) as http:  # the worker classifies it again
        _wait_classified(http, {"Authorization": f"Bearer {admin}"}, 3)
    text = cli("alerts", "show", str(resolved["id"]))
    assert text.exit_code == 0 and "AI-generated classification" in text.stdout
    assert "acknowledged by ops@example.com" in text.stdout
    out = cli("alerts", "ack", str(rows[0]["id"]), "--note", "local ack")
    assert out.exit_code == 0 and "acknowledged" in out.stdout
    stats = cli("--url", srv.url, "--token", admin, "alerts", "stats", "--json")
    assert json.loads(stats.stdout)["total"] == 3
    missing = cli("alerts", "show", "424242")
    assert missing.exit_code == 4 and missing.stderr.startswith("Error:")
    missing = cli("--url", srv.url, "--token", admin, "alerts", "show", "424242")
    assert missing.exit_code == 4 and missing.stderr.startswith("Error:")  # the same remotely
    assert admin not in missing.stderr
    bad = cli("--url", "ftp://example", "--token", admin, "alerts", "list")
    assert bad.exit_code == 2 and "hint:" in bad.stderr
    down = cli("--url", "http://127.0.0.1:9", "--token", admin, "alerts", "list")
    assert down.exit_code == 9 and "cannot reach" in down.stderr and admin not in down.stderr
    notoken = cli("--url", srv.url, "alerts", "list")
    assert notoken.exit_code == 2 and "hint:" in notoken.stderr
    audit = cli("audit", "--action", "alerts.*", "--json")
    actions = sorted(e["action"] for e in json.loads(audit.stdout))
    assert actions == [
        "alerts.ack", "alerts.ack", "alerts.ack", "alerts.reclassify", "alerts.reclassify"
    ]  # fmt: skip
    # test-fire reaches the webhook with the configured token
    monkeypatch.setenv("LLMGW_ALERTS__WEBHOOK_TOKEN", WEBHOOK_TOKEN)
    fired = cli("alerts", "test-fire", "--to", srv.url, "--json")
    assert fired.exit_code == 0, fired.stderr
    assert json.loads(fired.stdout)["new"] == 1
    # the global --url names the server too (test-fire needs no admin key: the webhook token)
    fired = cli("--url", srv.url, "alerts", "test-fire", "--name", "ViaUrl", "--json")
    assert fired.exit_code == 0, fired.stderr
    assert json.loads(fired.stdout)["new"] == 1
    # without --json one readable line (was the answer's Python repr); again: a duplicate
    fired = cli("alerts", "test-fire", "--to", srv.url, "--name", "ViaUrl")
    assert fired.exit_code == 0, fired.stderr
    assert re.fullmatch(
        rf"sent firing ViaUrl to {re.escape(srv.url)}: stored \(a duplicate\), "
        r"delivery \d+, 0 new, 0 resolved",
        fired.stdout.strip(),
    ), fired.stdout
    # a token the server does not know: exit 6 with a hint, the token never printed
    monkeypatch.setenv("LLMGW_ALERTS__WEBHOOK_TOKEN", "not-the-servers-token")
    refused = cli("alerts", "test-fire", "--to", srv.url)
    assert refused.exit_code == 6 and "refused the token" in refused.stderr
    assert "hint:" in refused.stderr and "not-the-servers-token" not in refused.stderr
