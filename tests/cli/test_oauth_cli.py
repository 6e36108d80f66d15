"""``llmgw oauth clients|keys`` and ``llmgw tokens`` through the real entry point, on SQLite and
PostgreSQL: secrets shown once, audit rows, confirmations, and the tokens working (or not) with
the real ``TokenService``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmgw.config import Settings
from llmgw.errors import AuthError
from llmgw.identity.tokens import TokenService
from llmgw.storage.db import make_engine


@pytest.fixture
def run(cli: Any, db_url: str) -> Any:
    def go(*args: str) -> Any:
        return cli(*args, env={"LLMGW_DATABASE_URL": db_url})

    return go


@pytest.fixture
def service(db_url: str, home: Any) -> Iterator[TokenService]:
    engine = make_engine(db_url)
    yield TokenService.from_settings(Settings(home=home), engine)
    engine.dispose()


def test_clients_create_list_revoke(run: Any) -> None:
    made = run(
        "oauth", "clients", "create", "--name", "CI bot", "--kind", "confidential",
        "--grant", "client_credentials", "--scope", "chat", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    client = json.loads(made.stdout)
    assert client["client_secret"].startswith("llmgw_cs_") and client["kind"] == "confidential"
    listed = json.loads(run("oauth", "clients", "list", "--json").stdout)
    assert [c["client_id"] for c in listed] == ["llmgw-cli", client["client_id"]]
    assert all("secret" not in k for c in listed for k in c)
    text = run("oauth", "clients", "list")
    assert "CI bot" in text.stdout and client["client_secret"] not in text.stdout
    refused = run("oauth", "clients", "revoke", client["client_id"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr  # no terminal, no --yes
    done = run("oauth", "clients", "revoke", client["client_id"], "--yes", "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["status"] == "revoked"
    assert len(json.loads(run("oauth", "clients", "list", "--json").stdout)) == 1
    audit = json.loads(run("audit", "--json").stdout)
    actions = [a["action"] for a in audit]
    assert "oauth.clients.create" in actions and "oauth.clients.revoke" in actions
    assert client["client_secret"] not in json.dumps(audit)


@pytest.mark.parametrize(
    "args",
    [
        ("--name", "x", "--kind", "weird"),
        ("--name", "x", "--redirect-uri", "http://evil.example/cb"),
        ("--name", "x", "--grant", "password"),
        ("--name", "x", "--redirect-uri", "https://a.example/cb", "--scope", "root"),
    ],
)
def test_clients_create_refuses_bad_input(run: Any, args: tuple[str, ...]) -> None:
    r = run("oauth", "clients", "create", *args)
    assert r.exit_code == 2 and r.stderr.startswith("Error: ") and "hint:" in r.stderr
    assert len(json.loads(run("oauth", "clients", "list", "--json").stdout)) == 1


def test_tokens_create_list_revoke(run: Any, service: TokenService) -> None:
    assert run("users", "create", "--email", "ci@example.com").exit_code == 0
    made = run(
        "tokens", "create", "--user", "ci@example.com", "--name", "pipeline",
        "--expires", "365d", "--scope", "chat", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    rec = json.loads(made.stdout)
    assert rec["kind"] == "pat" and rec["scope"] == "chat" and rec["user"] == "ci@example.com"
    svc = service
    assert svc.verify(rec["token"]).email == "ci@example.com"
    listed = json.loads(run("tokens", "list", "--json").stdout)
    assert [t["jti"] for t in listed] == [rec["jti"]] and "token" not in listed[0]
    assert rec["token"] not in run("tokens", "list").stdout
    gone = run("tokens", "revoke", rec["jti"][:10], "--yes", "--json")
    assert gone.exit_code == 0 and json.loads(gone.stdout)["revoked"] == [rec["jti"]]
    with pytest.raises(AuthError):
        svc.verify(rec["token"])
    assert json.loads(run("tokens", "list", "--json").stdout) == []
    assert json.loads(run("tokens", "list", "--all", "--json").stdout)[0]["status"] == "revoked"
    audit = json.dumps(json.loads(run("audit", "--json").stdout))
    assert "tokens.create" in audit and "tokens.revoke" in audit and rec["token"] not in audit


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--expires", "999d"), 2),
        (("--expires", "soon"), 2),
        (("--scope", "admin"), 2),  # not an admin
        (("--scope", "root"), 2),
        (("--user", "nobody@example.com"), 4),
    ],
)
def test_tokens_create_refuses(run: Any, args: tuple[str, ...], code: int) -> None:
    run("users", "create", "--email", "ci@example.com")
    base = {"--user": "ci@example.com", "--name": "x", "--expires": "30d", "--scope": "chat"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    r = run("tokens", "create", *flat)
    assert r.exit_code == code, r.stderr
    assert r.stderr.startswith("Error: ")
    assert json.loads(run("tokens", "list", "--json").stdout) == []


def test_keys_list_and_rotate(run: Any) -> None:
    empty = run("oauth", "keys", "list", "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []
    first = json.loads(run("oauth", "keys", "rotate", "--yes", "--json").stdout)
    second = json.loads(run("oauth", "keys", "rotate", "--yes", "--overlap", "2h", "--json").stdout)
    keys = json.loads(run("oauth", "keys", "list", "--json").stdout)
    states = {k["kid"]: k["state"] for k in keys}
    assert states == {second["kid"]: "signing", first["kid"]: "verifying"}
    assert "private" not in json.dumps(keys) and '"d"' not in json.dumps(keys)
    assert run("oauth", "keys", "rotate").exit_code == 2  # asks first


def test_remote_url_is_refused_for_local_commands(cli: Any) -> None:
    r = cli("--url", "http://127.0.0.1:9", "tokens", "list")
    assert r.exit_code == 2 and "--url" in r.stderr
