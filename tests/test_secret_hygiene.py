"""AUTH-7 end to end: no secret issued during a real ``llmgw serve`` run shows up anywhere.

One gateway process (access log on, log level debug, stdout/stderr captured to files) in front
of OpenAI emulators that demand an upstream API key (one healthy, four misbehaving: an error that
echoes the request's credentials, an HTML error page, truncated JSON, a redirect to another
host) and a GigaChat emulator with its own authorization key (OAuth token exchange, an API
fault that echoes the access token, an OAuth fault that echoes the authorization key) and a
YandexGPT emulator with an API key (and a fault that echoes it). Keys
are issued, rotated and revoked through the CLI; clients call with good, wrong, revoked and
x-api-key credentials. Then every secret must occur zero times (whole, or its last 16
characters) in: the server's logs, every response body and header, ``/metrics``, every row of
every table, ``usage export`` (CSV and JSONL), ``keys list/show --json``, ``config show --json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from llmgw.emulators import gigachat, yandexgpt
from llmgw.emulators.openai import create_app as openai_app
from llmgw.emulators.runner import RunningServer, serve_in_thread

pytestmark = pytest.mark.postgres

LLMGW = str(Path(sys.executable).with_name("llmgw"))
MSG = [{"role": "user", "content": "hello there"}]
FAULTY = ("echo_credentials", "html_error", "invalid_json", "redirect")
TAIL = 16  # a leak of only the end of a secret (a "masked" key) counts too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _provider(name: str, url: str, models: list[str]) -> str:
    return (
        f'[[providers]]\nname = "{name}"\nkind = "openai"\nbase_url = "{url}/v1"\n'
        f'api_key_env = "HYGIENE_UPSTREAM_KEY"\nmodels = {models!r}\n'
        "first_byte_timeout = 5\n\n".replace("'", '"')
    )


class Run:
    """Everything the client saw, plus the secrets to look for."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.seen: list[str] = []  # response status lines, headers and bodies

    def keep(self, label: str, response: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.seen.append(f"{label} {response.status_code}\n{headers}\n{response.text}")
        return response


@pytest.fixture
def emulators() -> Iterator[dict[str, Any]]:
    """The upstreams: healthy OpenAI, four faulty OpenAI, GigaChat; with their credentials."""
    upstream_key = "sk-hygiene-" + secrets.token_urlsafe(24)
    giga_key = base64.b64encode(
        f"cid-{secrets.token_hex(8)}:csecret-{secrets.token_hex(16)}".encode()
    ).decode()
    running: list[RunningServer] = []

    def start(app: Any) -> RunningServer:
        server = serve_in_thread(app)
        running.append(server)
        return server

    ok = start(openai_app(api_key=upstream_key))
    faulty = {
        f: start(openai_app(api_key=upstream_key, models=[f"m-{f}"], fault=f)) for f in FAULTY
    }
    giga_app = gigachat.create_app(credentials=giga_key, max_concurrency=10)
    giga = start(giga_app)
    yandex_key = "AQVN" + secrets.token_urlsafe(30)
    yandex_app = yandexgpt.create_app(api_keys=[yandex_key])
    yandex = start(yandex_app)
    yield {
        "upstream_key": upstream_key,
        "giga_key": giga_key,
        "ok": ok,
        "faulty": faulty,
        "giga": giga,
        "giga_emu": giga_app.state.emulator,
        "yandex_key": yandex_key,
        "yandex": yandex,
        "yandex_emu": yandex_app.state.emulator,
    }
    for server in running:
        server.stop()


@pytest.fixture
def config(tmp_path: Path, pg_url: str, emulators: dict[str, Any]) -> tuple[Path, str]:
    """A config file (PostgreSQL URL with a password in it) and that password."""
    db_password = "dbpw-" + secrets.token_hex(12)
    db_url = pg_url.replace("postgres@", f"postgres:{db_password}@", 1)  # trust auth ignores it
    text = f'log_level = "debug"\n\n[database]\nurl = "{db_url}"\n\n'
    text += "[server]\naccess_log = true\nkey_cache_seconds = 0.5\n\n"
    text += "[usage]\nflush_interval = 0.05\n\n"
    text += "[routing]\nbackoff_base = 0.01\nhealth_write_interval = 0.2\n\n"
    text += _provider("openai", emulators["ok"].url, ["gpt-4o-mini", "text-embedding-3-small"])
    for fault, server in emulators["faulty"].items():
        text += _provider(fault.replace("_", "-"), server.url, [f"m-{fault}"])
    giga = emulators["giga"].url
    text += (
        '[[providers]]\nname = "giga"\nkind = "gigachat"\n'
        f'base_url = "{giga}/api/v1"\nauth_url = "{giga}/api/v2/oauth"\n'
        'scope = "GIGACHAT_API_B2B"\napi_key_env = "HYGIENE_GIGA_KEY"\n'
        'models = ["GigaChat-2", "Embeddings"]\nfirst_byte_timeout = 5\n\n'
    )
    text += (
        '[[providers]]\nname = "yandex"\nkind = "yandexgpt"\n'
        f'base_url = "{emulators["yandex"].url}"\nfolder_id = "{yandexgpt.DEFAULT_FOLDER}"\n'
        'api_key_env = "HYGIENE_YANDEX_KEY"\nmodels = ["yandexgpt-lite"]\nfirst_byte_timeout = 5\n'
    )
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path, db_password


@pytest.fixture
def gateway(
    config: tuple[Path, str], emulators: dict[str, Any], home: Path, tmp_path: Path
) -> Iterator[tuple[str, Path, Path, subprocess.Popen[bytes]]]:
    """A real ``llmgw serve`` process; yields (base URL, stdout file, stderr file, process)."""
    port = _free_port()
    out, err = tmp_path / "serve.stdout", tmp_path / "serve.stderr"
    env = {
        **os.environ,
        "LLMGW_HOME": str(home),
        "HYGIENE_UPSTREAM_KEY": emulators["upstream_key"],
        "HYGIENE_GIGA_KEY": emulators["giga_key"],
        "HYGIENE_YANDEX_KEY": emulators["yandex_key"],
    }
    cmd = [LLMGW, "--config", str(config[0]), "serve", "--port", str(port)]
    cmd += ["--drain-seconds", "2"]
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(out.read_text() + err.read_text())
            time.sleep(0.1)
        yield url, out, err, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _json_cli(cli: Any, cfg: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = cli("--config", str(cfg), *args, env=env)
    assert res.exit_code == 0, (args, res.stdout, res.stderr)
    return str(res.stdout + res.stderr)


def _traffic(run: Run, url: str, keys: dict[str, str], emulators: dict[str, Any]) -> None:
    """Successful, refused and failing calls; everything received is kept in ``run``."""
    good, revoked, rotated_old = keys["good"], keys["revoked"], keys["rotated_old"]
    bearer = {"Authorization": f"Bearer {good}"}
    with httpx.Client(base_url=url, timeout=20) as c:

        def chat(label: str, model: str, headers: dict[str, str], **extra: Any) -> httpx.Response:
            body = {"model": model, "messages": MSG, **extra}
            return run.keep(label, c.post("/v1/chat/completions", json=body, headers=headers))

        def stream(label: str, model: str, headers: dict[str, str]) -> httpx.Response:
            body = {"model": model, "messages": MSG, "stream": True}
            with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                r.read()
            return run.keep(label, r)

        # successes: JSON, stream, embeddings, models; Bearer and x-api-key
        assert chat("chat", "openai/gpt-4o-mini", bearer).status_code == 200
        assert "Echo" in stream("stream", "gpt-4o-mini", bearer).text
        r = c.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"},
                   headers=bearer)  # fmt: skip
        assert run.keep("embeddings", r).status_code == 200
        assert chat("x-api-key", "gpt-4o-mini", {"x-api-key": good}).status_code == 200
        assert run.keep("models", c.get("/v1/models", headers=bearer)).status_code == 200
        # refused credentials: revoked, rotated away, wrong, mangled, Basic, in the query
        for label, headers in {
            "revoked": {"Authorization": f"Bearer {revoked}"},
            "rotated-old": {"Authorization": f"Bearer {rotated_old}"},
            "wrong": {"Authorization": f"Bearer {keys['wrong']}"},
            "wrong-x-api-key": {"x-api-key": keys["wrong"]},
            "mangled": {"Authorization": f"Bearer {good}x"},
            "basic": {"Authorization": f"Basic {good}"},
        }.items():
            assert chat(label, "gpt-4o-mini", headers).status_code == 401, label
        r = run.keep("query-key", c.get(f"/v1/models?api_key={good}"))
        assert r.status_code == 401
        # steering fields carrying a credential are refused, not forwarded
        r = chat("api_key-field", "gpt-4o-mini", bearer, api_key=emulators["upstream_key"])
        assert r.status_code == 400, r.text
        # upstream faults: sanitized errors (the echoed 4xx is passed on, redacted), JSON and SSE
        for fault in FAULTY:
            r = chat(f"fault-{fault}", f"m-{fault}", bearer)
            assert r.status_code in (400, 502, 504), (fault, r.status_code, r.text)
        stream("fault-stream-echo", "m-echo_credentials", bearer)
        stream("fault-stream-invalid-json", "m-invalid_json", bearer)
        # GigaChat: the token exchange echoes the authorization key first, then works
        emu = emulators["giga_emu"]
        # the model catalog's start-up listing already got a token: expire it, so the next call
        # gets a 401 and exchanges the key again
        emu.expire_tokens()
        emu.oauth_fault = "echo_credentials"
        r = chat("giga-oauth-echo", "giga/GigaChat-2", bearer)
        assert r.status_code in (502, 503, 504), r.text
        emu.oauth_fault = None
        assert chat("giga-chat", "giga/GigaChat-2", bearer).status_code == 200
        assert stream("giga-stream", "giga/GigaChat-2", bearer).status_code == 200
        r = c.post("/v1/embeddings", json={"model": "giga/Embeddings", "input": "hi"},
                   headers=bearer)  # fmt: skip
        assert run.keep("giga-embeddings", r).status_code == 200
        emu.fault = "echo_credentials"  # now the API echoes the access token
        assert chat("giga-echo", "giga/GigaChat-2", bearer).status_code in (502, 503)
        stream("giga-stream-echo", "giga/GigaChat-2", bearer)
        emu.fault = None
        assert emu.oauth_calls >= 1 and emu.tokens
        for i, token in enumerate(emu.tokens):
            run.secrets[f"gigachat access token {i}"] = token
        # YandexGPT with an API key: works, then its API echoes the credential
        assert chat("yandex-chat", "yandex/yandexgpt-lite", bearer).status_code == 200
        assert stream("yandex-stream", "yandex/yandexgpt-lite", bearer).status_code == 200
        emulators["yandex_emu"].fault = "echo_credentials"
        assert chat("yandex-echo", "yandex/yandexgpt-lite", bearer).status_code >= 400
        stream("yandex-stream-echo", "yandex/yandexgpt-lite", bearer)
        emulators["yandex_emu"].fault = None
        health = run.keep("api/providers", c.get("/api/providers", headers=bearer))
        assert health.status_code == 200 and '"last_error":"' in health.text, health.text
        metrics = run.keep("metrics", c.get("/metrics"))
        assert "llmgw_" in metrics.text
        run.seen.append(metrics.text)


def _wait_for_usage(engine: sa.Engine, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.text("SELECT * FROM usage")).mappings()]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _all_rows(engine: sa.Engine) -> str:
    """Every row of every table, all columns, as text."""
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings():  # noqa: S608
                out.append(f"{table}: {dict(row)!r}")
    return "\n".join(out)


def test_no_secret_anywhere(
    cli: Any,
    config: tuple[Path, str],
    gateway: tuple[str, Path, Path, subprocess.Popen[bytes]],
    emulators: dict[str, Any],
    pg_url: str,
) -> None:
    cfg, db_password = config
    url, out_file, err_file, proc = gateway
    run = Run()

    created: list[str] = []

    def create(name: str) -> dict[str, Any]:
        res = cli("--config", str(cfg), "keys", "create", "--name", name, "--json")
        assert res.exit_code == 0, res.stderr
        created.append(res.stdout)
        return dict(json.loads(res.stdout))

    good, revoked, rotated = create("good"), create("revoked"), create("rotated")
    res = cli("--config", str(cfg), "keys", "revoke", revoked["id"], "--yes")
    assert res.exit_code == 0, res.stderr
    res = cli("--config", str(cfg), "keys", "rotate", rotated["id"], "--json", "--yes")
    assert res.exit_code == 0, res.stderr
    created.append(res.stdout)
    rotated_new = json.loads(res.stdout)
    keys = {
        "good": good["key"],
        "revoked": revoked["key"],
        "rotated_old": rotated["key"],
        "rotated_new": rotated_new["key"],
        "wrong": "llmgw_" + secrets.token_urlsafe(32),  # a credential the client got wrong
    }
    run.secrets.update({f"gateway key {k}": v for k, v in keys.items()})
    run.secrets["upstream API key"] = emulators["upstream_key"]
    run.secrets["GigaChat authorization key"] = emulators["giga_key"]
    run.secrets["YandexGPT API key"] = emulators["yandex_key"]
    run.secrets["database password"] = db_password
    time.sleep(0.6)  # the server's key cache (0.5 s) has seen the revocations

    _traffic(run, url, keys, emulators)

    from llmgw.storage.db import make_engine

    engine = make_engine(pg_url)
    try:
        rows = _wait_for_usage(engine, 15)
        assert len(rows) >= 15, rows  # the authenticated requests were recorded
        assert any(r["status"] != 200 for r in rows)
        deadline = time.monotonic() + 5  # provider health rows (with last_error) are written too
        while "'last_error': '" not in (tables := _all_rows(engine)):
            assert time.monotonic() < deadline, tables[-2000:]
            time.sleep(0.1)
    finally:
        engine.dispose()

    redis_password = "redispw-" + secrets.token_hex(8)
    run.secrets["redis password"] = redis_password
    env = {"LLMGW_REDIS_URL": f"redis://:{redis_password}@127.0.0.1:6379/0"}
    query_env = {
        "LLMGW_REDIS_URL": f"redis://127.0.0.1:6379/0?password={redis_password}",
        "LLMGW_DATABASE_URL": f"{pg_url}?password={db_password}",
    }
    cli_text = {
        "usage export jsonl": _json_cli(cli, cfg, "usage", "export", "--format", "jsonl"),
        "usage export csv": _json_cli(cli, cfg, "usage", "export", "--format", "csv"),
        "keys list": _json_cli(cli, cfg, "keys", "list", "--json"),
        "keys show": "".join(
            _json_cli(cli, cfg, "keys", "show", k["id"], "--json")
            for k in (good, revoked, rotated, rotated_new)
        ),
        "config show": _json_cli(cli, cfg, "config", "show", "--json", env=env),
        "config show (query-string passwords)": _json_cli(
            cli, cfg, "config", "show", "--json", env=query_env
        ),
    }
    proc.terminate()  # SIGTERM: drain, flush the access log and usage, exit 0
    assert proc.wait(15) == 0
    logs = out_file.read_text(errors="replace") + err_file.read_text(errors="replace")
    # the captures are real: one access-log line per request was written, usage was exported
    assert logs.count('"request_id":"req_') >= 25, logs[-2000:]
    assert "gpt-4o-mini" in cli_text["usage export jsonl"]

    # control: the matcher finds each gateway key where it is meant to be shown (once, at creation)
    for label in ("good", "revoked", "rotated_old", "rotated_new"):
        assert keys[label][-TAIL:] in "".join(created), label

    haystacks = {
        "server logs": logs,
        "responses": "\n".join(run.seen),
        "database rows": tables,
        **cli_text,
    }
    leaks = [
        f"{name} in {where}"
        for where, text in haystacks.items()
        for name, secret in run.secrets.items()
        if secret in text or secret[-TAIL:] in text
    ]
    # the stored digests stay in the database: no listing, log or response shows them (API3)
    assert hashlib.sha256(keys["good"].encode()).hexdigest() in tables  # control
    leaks += [
        f"digest of {name} in {where}"
        for where, text in haystacks.items()
        if where != "database rows"
        for name, secret in run.secrets.items()
        if name.startswith("gateway key") and hashlib.sha256(secret.encode()).hexdigest() in text
    ]
    assert not leaks, leaks
