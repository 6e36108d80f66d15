"""Providers managed at runtime (issue 16 part 2): a provider added through the admin API serves
on three running gateways within 5 s with no failed request; disabled, it takes no new request
while a running stream finishes; its credential is sealed and never answered; a config-file
provider is read-only and wins a name clash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings

SECOND_KEY = "sk-second-upstream-credential-9876543210"


def _chat(http: httpx.Client, model: str, key: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def _until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not applied in time"
        time.sleep(0.05)
    return time.monotonic() - start


def _answers(http: httpx.Client, key: str, status: int) -> Callable[[], bool]:
    return lambda: _chat(http, "second/extra-model", key).status_code == status


@pytest.fixture
def three(settings: Settings) -> Any:
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    servers = [serve_in_thread(create_app(settings)) for _ in range(3)]
    yield servers
    for s in servers:
        s.stop()


def test_a_provider_added_through_the_api_serves_on_three_instances_then_disabled_drains(
    three: list[Any], test_engine: Engine, upstream_factory: Callable[..., Any]
) -> None:
    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    admin = str(local.keys_create("root", user="root@example.com")["key"])
    second = upstream_factory(api_key=SECOND_KEY, models=("extra-model",), chunk_delay_ms=150)
    clients = [httpx.Client(base_url=s.url, timeout=10) for s in three]
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def steady() -> None:  # traffic on the config provider never fails during the changes
        while not stop.is_set():
            for http in clients:
                r = _chat(http, "openai/gpt-4o-mini", admin)
                served[0] += 1
                if r.status_code != 200:
                    failures.append(r.text)

    load = threading.Thread(target=steady)
    load.start()
    try:
        body = {
            "name": "second",
            "kind": "openai",
            "base_url": f"{second.url}/v1",
            "models": ["extra-model"],
            "api_key": SECOND_KEY,
        }
        added = clients[0].post(
            "/admin/v1/providers", json=body, headers={"Authorization": f"Bearer {admin}"}
        )
        assert added.status_code == 200, added.text
        assert added.json()["has_secret"] is True
        assert SECOND_KEY not in added.text and "aesgcm" not in added.text
        t0 = time.monotonic()
        for http in clients:
            _until(_answers(http, admin, 200), 5)
        assert time.monotonic() - t0 < 5.0
        status = clients[2].get("/api/providers", headers={"Authorization": f"Bearer {admin}"})
        rows = {(r["provider"], r["model"]) for r in status.json()["data"]}
        assert ("second", "extra-model") in rows
        # Listed with its model, and the credential is sealed at rest.
        stored = clients[1].get(
            "/admin/v1/providers/stored", headers={"Authorization": f"Bearer {admin}"}
        )
        assert [p["name"] for p in stored.json()["data"]] == ["second"]
        assert SECOND_KEY not in stored.text
        with test_engine.connect() as conn:
            raw = conn.execute(sa.text("SELECT secret, config FROM providers")).one()
        assert raw.secret.startswith("aesgcm1:") and SECOND_KEY not in str(raw)

        # A stream opened before the disable finishes; new requests are refused after it.
        chunks: list[str] = []

        def stream() -> None:
            req = {"model": "second/extra-model", "stream": True, "messages": [
                {"role": "user", "content": "tell me a long story"}]}  # fmt: skip
            with clients[2].stream(
                "POST", "/v1/chat/completions", json=req,
                headers={"Authorization": f"Bearer {admin}"},
            ) as r:  # fmt: skip
                assert r.status_code == 200
                chunks.extend(line for line in r.iter_lines() if line)

        streamer = threading.Thread(target=stream)
        streamer.start()
        time.sleep(0.4)
        off = clients[1].post(
            "/admin/v1/providers/second/disable", headers={"Authorization": f"Bearer {admin}"}
        )
        assert off.status_code == 200 and off.json()["enabled"] is False
        for http in clients:
            _until(_answers(http, admin, 404), 5)
        streamer.join(15)
        assert chunks and chunks[-1] == "data: [DONE]", chunks[-3:]
    finally:
        stop.set()
        load.join()
        for http in clients:
            http.close()
    assert failures == [] and served[0] > 3
    actions = [e["action"] for e in local.audit_list(action="providers.*")]
    assert sorted(actions) == ["providers.add", "providers.disable"]


def test_config_file_providers_are_read_only_and_win_a_name_clash(
    gateway_server: Any, test_engine: Engine
) -> None:
    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    auth = {"Authorization": f"Bearer {local.keys_create('r', user='root@example.com')['key']}"}
    with httpx.Client(base_url=gateway_server.url, timeout=10) as http:
        body = {"name": "openai", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
        clash = http.post("/admin/v1/providers", json=body, headers=auth)
        assert clash.status_code == 409 and "config file" in clash.json()["error"]["message"]
        gone = http.delete("/admin/v1/providers/openai", headers=auth)
        assert gone.status_code == 409
        bad = http.post(
            "/admin/v1/providers",
            json={"name": "x", "kind": "openai", "api_key_env": "HOME"},
            headers=auth,
        )
        assert bad.status_code == 400 and "api_key_env" in bad.text
        missing = http.patch("/admin/v1/providers/nope", json={"models": []}, headers=auth)
        assert missing.status_code == 404


def test_the_cli_manages_stored_providers_through_a_server(
    gateway_server: Any, test_engine: Engine, cli: Callable[..., Any]
) -> None:
    """``llmgw --url URL --token KEY providers add|stored|remove``: the same records remotely."""
    import json

    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    token = str(local.keys_create("root", user="root@example.com")["key"])
    remote = ("--url", gateway_server.url, "--token", token, "providers")
    r = cli(*remote, "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "-m", "llama", "--json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["source"] == "database"
    assert [p["name"] for p in json.loads(cli(*remote, "stored", "--json").stdout)] == ["vllm"]
    r = cli(*remote, "edit", "vllm", "--unset", "models", "--set", "idle_timeout=45", "--json")
    assert r.exit_code == 0, r.stderr  # only those fields change; null unsets through the API
    edited = json.loads(r.stdout)
    assert "models" not in edited and edited["idle_timeout"] == 45
    assert edited["base_url"] == "http://127.0.0.1:9/v1"
    r = cli(*remote, "add", "openai", "--kind", "openai")
    assert r.exit_code == 5 and "config file" in r.stderr  # the config-file provider wins
    assert cli(*remote, "remove", "vllm", "--yes").exit_code == 0
    assert local.providers_stored() == []


def test_a_sealed_credential_opens_only_with_its_key_and_name() -> None:
    from llmgw.errors import ConfigError
    from llmgw.providers.managed import Sealer

    box = Sealer(b"k" * 32).seal(SECOND_KEY, "second")
    assert SECOND_KEY not in box and Sealer(b"k" * 32).open(box, "second") == SECOND_KEY
    with pytest.raises(ConfigError, match="same \\[identity\\] signing_secret|cannot be opened"):
        Sealer(b"x" * 32).open(box, "second")
    with pytest.raises(ConfigError):
        Sealer(b"k" * 32).open(box, "other")  # bound to the provider's name


def test_an_edit_and_a_removal_apply_without_a_restart(
    gateway_server: Any, test_engine: Engine, upstream_factory: Callable[..., Any]
) -> None:
    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    key = str(local.keys_create("root", user="root@example.com")["key"])
    auth = {"Authorization": f"Bearer {key}"}
    up = upstream_factory(api_key=SECOND_KEY, models=())  # accepts any model name
    with httpx.Client(base_url=gateway_server.url, timeout=10, headers=auth) as http:

        def status(model: str) -> Callable[[], bool]:
            return lambda: _chat(http, model, key).status_code == 200

        body = {"name": "second", "kind": "openai", "base_url": f"{up.url}/v1",
                "models": ["extra-model"], "api_key": SECOND_KEY}  # fmt: skip
        assert http.post("/admin/v1/providers", json=body).status_code == 200
        _until(status("second/extra-model"), 5)
        assert _chat(http, "second/newer", key).status_code == 404
        edited = http.patch("/admin/v1/providers/second", json={"models": ["newer"]})
        assert edited.status_code == 200 and edited.json()["revision"] == 2
        _until(status("second/newer"), 5)
        assert _chat(http, "second/extra-model", key).status_code == 404
        assert http.delete("/admin/v1/providers/second").status_code == 200
        _until(lambda: _chat(http, "second/newer", key).status_code == 404, 5)
        assert _chat(http, "openai/gpt-4o-mini", key).status_code == 200
