"""``llmgw tokens`` and ``llmgw oauth`` in both modes, against a real ``llmgw serve`` and on its
database (as test_remote_admin.py does for keys and users): the same ``--json`` locally and with
``--url``; a revocation made remotely is refused by the server at once; the audit log names the
admin and ``cli``; a non-admin key is exit 6 and changes nothing; a whole JWT is never put in a
URL."""

from __future__ import annotations

import json

import httpx

from tests.cli import test_remote_admin as _base
from tests.cli.test_remote_admin import Gateway, _both, _json, _without

gateway = _base.gateway  # the real server and its admin, shared with the keys and users tests

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
FRESH_TOKEN = {"jti", "token", "issued_at", "expires_at"}
FRESH_CLIENT = {"client_id", "client_secret", "created_at"}


def _chat(gw: Gateway, token: str) -> int:
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json=CHAT,
        timeout=10,
    )
    return r.status_code


def test_tokens_give_the_same_json_in_both_modes(gateway: Gateway) -> None:
    gw = gateway
    create = (
        "tokens", "create", "--user", "plain@example.com", "--name", "ci",
        "--expires", "30d", "--scope", "chat", "--rpm", "5",
    )  # fmt: skip
    local, remote = _both(gw, *create)
    assert _without(local, FRESH_TOKEN) == _without(remote, FRESH_TOKEN)
    assert remote["rpm"] == 5 and remote["tpm"] is None and remote["kind"] == "pat"
    assert remote["user"] == "plain@example.com" and remote["token"].count(".") == 2
    # the server's token works there, with its own rpm in the x-ratelimit headers (a token made
    # locally carries the local issuer, which this test server, on a random port, does not share)
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {remote['token']}"},
        json=CHAT,
        timeout=10,
    )
    assert r.status_code == 200 and r.headers["x-ratelimit-limit-requests"] == "5"
    for args in (("tokens", "list"), ("tokens", "list", "--user", "plain@example.com")):
        got_local, got_remote = _both(gw, *args)
        assert got_local == got_remote, args
        assert {t["jti"] for t in got_remote} == {local["jti"], remote["jti"]}
        assert all("token" not in t for t in got_remote)  # never the token in a listing
    done_remote = _json(gw.remote("tokens", "revoke", remote["jti"][:10], "--yes", "--json"))
    assert done_remote == {"jti": remote["jti"], "revoked": [remote["jti"]]}
    assert _chat(gw, remote["token"]) == 401  # the server that revoked refuses it at once
    done_local = _json(gw.local("tokens", "revoke", local["jti"], "--yes", "--json"))
    assert done_local == {"jti": local["jti"], "revoked": [local["jti"]]}
    again_local, again_remote = _both(gw, "tokens", "list", "--all")
    assert again_local == again_remote and {t["status"] for t in again_remote} == {"revoked"}
    entries = _json(gw.local("audit", "--actor", gw.admin_email, "--json"))
    assert {(e["action"], e["source"]) for e in entries} >= {
        ("tokens.create", "cli"),
        ("tokens.revoke", "cli"),
    }
    assert remote["token"] not in json.dumps(entries)


def test_oauth_clients_and_signing_keys_give_the_same_json_in_both_modes(
    gateway: Gateway,
) -> None:
    gw = gateway
    create = (
        "oauth", "clients", "create", "--name", "robot", "--kind", "confidential",
        "--grant", "client_credentials", "--scope", "chat",
    )  # fmt: skip
    local, remote = _both(gw, *create)
    assert _without(local, FRESH_CLIENT) == _without(remote, FRESH_CLIENT)
    assert remote["client_secret"].startswith("llmgw_cs_")
    listed_local, listed_remote = _both(gw, "oauth", "clients", "list")
    assert listed_local == listed_remote
    assert [c["client_id"] for c in listed_remote] == [
        "llmgw-cli",
        local["client_id"],
        remote["client_id"],
    ]
    # the remote client's token works, and revoking the client remotely ends it at once
    issued = httpx.post(
        f"{gw.url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "chat"},
        auth=(remote["client_id"], remote["client_secret"]),
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    assert _chat(gw, issued.json()["access_token"]) == 200
    refused = gw.remote("oauth", "clients", "revoke", remote["client_id"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr  # asks first, no terminal
    done = _json(gw.remote("oauth", "clients", "revoke", remote["client_id"], "--yes", "--json"))
    assert done["status"] == "revoked" and done["tokens_revoked"] == 1
    assert _chat(gw, issued.json()["access_token"]) == 401
    assert (
        _both(gw, "oauth", "clients", "list", "--all")[0]
        == _both(gw, "oauth", "clients", "list", "--all")[1]
    )
    # signing keys: the first was made by the token above; a remote rotation makes a new one
    keys_local, keys_remote = _both(gw, "oauth", "keys", "list")
    assert keys_local == keys_remote and [k["state"] for k in keys_remote] == ["signing"]
    new = _json(gw.remote("oauth", "keys", "rotate", "--overlap", "2h", "--yes", "--json"))
    keys_local, keys_remote = _both(gw, "oauth", "keys", "list")
    assert keys_local == keys_remote
    assert [(k["kid"], k["state"]) for k in keys_remote] == [
        (new["kid"], "signing"),
        (keys_local[1]["kid"], "verifying"),
    ]
    entries = _json(gw.local("audit", "--actor", gw.admin_email, "--json"))
    assert {e["action"] for e in entries} >= {
        "oauth.clients.create",
        "oauth.clients.revoke",
        "oauth.keys.rotate",
    }


def test_a_non_admin_key_is_exit_6_and_changes_nothing_AUTH_6(gateway: Gateway) -> None:
    gw = gateway
    env = {"LLMGW_URL": gw.url, "LLMGW_TOKEN": gw.user_token}
    before = _json(gw.local("tokens", "list", "--all", "--json"))
    for args in (
        ("tokens", "list"),
        ("tokens", "create", "--user", "plain@example.com", "--name", "x"),
        ("oauth", "clients", "create", "--name", "x"),
        ("oauth", "keys", "rotate", "--yes"),
    ):
        res = gw.cli(*args, env=env)
        assert res.exit_code == 6, (args, res.stderr)
        assert res.stderr.startswith("Error: ") and len(res.stderr.splitlines()) <= 2
    assert _json(gw.local("tokens", "list", "--all", "--json")) == before
    assert len(_json(gw.local("oauth", "clients", "list", "--json"))) == 1


def test_a_whole_token_is_never_sent_in_a_url(gateway: Gateway) -> None:
    made = _json(
        gateway.remote(
            "tokens", "create", "--user", "plain@example.com", "--name", "ci", "--json"
        )
    )  # fmt: skip
    res = gateway.remote("tokens", "revoke", made["token"], "--yes")
    assert res.exit_code == 2 and "not the token" in res.stderr
    assert made["token"] not in res.stderr + res.stdout
    assert _chat(gateway, made["token"]) == 200
