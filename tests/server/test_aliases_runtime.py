"""Aliases managed at runtime (issue 16 part 2): an alias stored through the admin API or
``llmgw providers aliases`` is answered by running gateways within seconds, changed and
removed without a restart; config-file aliases are read-only and win a name clash."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from tests.conftest import CliResult
from tests.server.conftest import LLMGW, free_port

SECOND_KEY = "sk-second-upstream-credential-9876543210"


def _until(check: Callable[[], Any], timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not applied in time"
        time.sleep(0.05)
    return time.monotonic() - start


def _chat(http: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http.post("/v1/chat/completions", json=body)


def _answers(http: httpx.Client, model: str, status: int) -> Callable[[], bool]:
    return lambda: _chat(http, model).status_code == status


def _served_by(http: httpx.Client, model: str, where: str) -> Callable[[], bool]:
    def check() -> bool:
        r = _chat(http, model)
        return r.status_code == 200 and r.headers.get("x-llmgw-served-by") == where

    return check


def test_an_alias_added_edited_and_removed_through_the_api_applies_without_a_restart(
    gateway_server: Any,
    test_engine: Engine,
    upstream_factory: Callable[..., Any],
    cli: Callable[..., CliResult],
) -> None:
    local = LocalAdmin(test_engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    key = str(local.keys_create("root", user="root@example.com")["key"])
    second = upstream_factory(api_key=SECOND_KEY, models=("extra-model",))
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway_server.url, timeout=10, headers=auth) as http:
        clash = http.post("/admin/v1/aliases", json={"name": "chat-default", "targets": ["x/y"]})
        assert clash.status_code == 409 and "config file" in clash.json()["error"]["message"]
        bad = http.post(
            "/admin/v1/aliases", json={"name": "openai/gpt-4o-mini", "targets": ["a/b"]}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
        odd = http.post("/admin/v1/aliases", json={"name": "x", "targets": "a/b"})
        assert odd.status_code == 400 and odd.json()["error"]["param"] == "targets"
        assert _chat(http, "smart").status_code == 404

        added = http.post("/admin/v1/aliases", json={"name": "smart",
                          "targets": ["second/extra-model", "openai/gpt-4o-mini"]})  # fmt: skip
        assert added.status_code == 200, added.text
        assert added.json()["unresolved"] == ["second/extra-model"]  # not stored yet
        # The alias answers at once through its second target (the first is unknown)...
        took = _until(_served_by(http, "smart", "openai/gpt-4o-mini"))
        assert took < 5.0
        models = {m["id"] for m in http.get("/v1/models").json()["data"]}
        assert {"smart", "chat-default"} <= models
        # ... and through its first once that provider is stored: aliases follow providers.
        body = {"name": "second", "kind": "openai", "base_url": f"{second.url}/v1",
                "models": ["extra-model"], "api_key": SECOND_KEY}  # fmt: skip
        assert http.post("/admin/v1/providers", json=body).status_code == 200
        _until(_served_by(http, "smart", "second/extra-model"))

        edited = http.patch("/admin/v1/aliases/smart", json={"targets": ["openai/gpt-4o-mini"]})
        assert edited.status_code == 200 and edited.json()["revision"] == 2
        _until(_served_by(http, "smart", "openai/gpt-4o-mini"))
        listed = http.get("/admin/v1/aliases").json()["data"]
        assert [(a["name"], a["source"]) for a in listed] == [
            ("chat-default", "config"), ("smart", "database"),
        ]  # fmt: skip

        # The CLI through the server sees the same records.
        r = cli("--url", gateway_server.url, "--token", key, "providers", "aliases", "list",
                "--json")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        assert [a["name"] for a in json.loads(r.stdout)] == ["chat-default", "smart"]
        r = cli("--url", gateway_server.url, "--token", key, "providers", "aliases", "edit",
                "chat-default", "openai/gpt-4o-mini")  # fmt: skip
        assert r.exit_code == 5 and "read-only" in r.stderr
        remote = ("--url", gateway_server.url, "--token", key, "providers", "aliases")
        r = cli(*remote, "add", "viacli", "openai/gpt-4o-mini=2", "--json")
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["targets"] == [{"target": "openai/gpt-4o-mini", "weight": 2.0}]
        _until(_served_by(http, "viacli", "openai/gpt-4o-mini"))
        r = cli(*remote, "remove", "viacli", "--yes")
        assert r.exit_code == 0 and "removed alias viacli" in r.stdout

        assert http.delete("/admin/v1/aliases/smart").status_code == 200
        _until(lambda: _chat(http, "smart").status_code == 404)
        assert http.delete("/admin/v1/aliases/smart").status_code == 404
        assert _chat(http, "chat-default").status_code == 200
    actions = [e["action"] for e in local.audit_list(action="aliases.*")]
    assert sorted(actions) == ["aliases.add", "aliases.add", "aliases.edit", "aliases.remove",
                               "aliases.remove"]  # fmt: skip


@pytest.fixture
def serve_on(home: Path, upstream_key: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start ``llmgw serve`` processes on one config file; returns each one's base URL."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: Path, log_name: str) -> str:
        port = free_port()
        env = {**os.environ, "EMULATOR_API_KEY": upstream_key, "LLMGW_HOME": str(home)}
        log_path = tmp_path / log_name
        argv = [LLMGW, "--config", str(config), "serve", "--port", str(port)]
        with log_path.open("wb") as log:
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            assert procs[-1].poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.postgres
def test_an_alias_stored_with_the_cli_serves_on_two_llmgw_serve_processes_on_postgresql(
    pg_url: str,
    home: Path,
    emulator: Any,
    serve_on: Callable[..., str],
    cli: Callable[..., CliResult],
) -> None:
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    engine = make_engine(pg_url)
    upgrade(engine)
    local = LocalAdmin(engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    key = str(local.keys_create("root", user="root@example.com")["key"])
    engine.dispose()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.toml"
    config.write_text(
        f'[database]\nurl = "{pg_url}"\n\n'
        '[[providers]]\nname = "openai"\nkind = "openai"\n'
        f'base_url = "{emulator.url}/v1"\napi_key_env = "EMULATOR_API_KEY"\n'
        'models = ["gpt-4o-mini"]\n\n[aliases]\nfast = ["openai/gpt-4o-mini"]\n'
    )
    urls = [serve_on(config, f"serve{i}.log") for i in range(2)]
    r = cli("--config", str(config), "providers", "aliases", "add", "smart", "openai/gpt-4o-mini")
    assert r.exit_code == 0, r.stderr
    assert "added alias smart -> openai/gpt-4o-mini" in r.stdout
    t0 = time.monotonic()
    clients = [httpx.Client(base_url=u, timeout=10, headers={"Authorization": f"Bearer {key}"})
               for u in urls]  # fmt: skip
    try:
        for http in clients:
            _until(_served_by(http, "smart", "openai/gpt-4o-mini"))
        assert time.monotonic() - t0 < 5.0
        r = cli("--config", str(config), "providers", "aliases", "remove", "smart", "--yes")
        assert r.exit_code == 0, r.stderr
        for http in clients:
            _until(_answers(http, "smart", 404))
            assert _chat(http, "fast").status_code == 200
    finally:
        for http in clients:
            http.close()
