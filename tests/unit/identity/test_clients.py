"""ClientService and redirect-URI matching (OAUTH-5, OAUTH-6; RFC 9700 §2.1, RFC 8252 §7.3)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from llmgw.errors import NotFound, UsageError
from llmgw.identity.clients import CLI_CLIENT_ID, DEVICE_GRANT, ClientService, redirect_uri_allowed
from llmgw.identity.errors import InvalidClient

from .conftest import Clock


@pytest.fixture
def clients(engine: Engine, clock: Clock) -> ClientService:
    return ClientService(engine, clock=clock)


def test_the_cli_client_exists_out_of_the_box(clients: ClientService) -> None:
    cli = clients.get(CLI_CLIENT_ID)
    assert cli.is_public and cli.active
    assert set(cli.grant_types) == {"authorization_code", "refresh_token", DEVICE_GRANT}
    assert redirect_uri_allowed(cli, "http://127.0.0.1:53682/callback")
    assert redirect_uri_allowed(cli, "http://[::1]:53682/callback")
    assert clients.authenticate(CLI_CLIENT_ID, None) == cli
    assert [c.client_id for c in clients.list()] == [CLI_CLIENT_ID]


def test_create_a_confidential_client_shows_its_secret_once(clients: ClientService) -> None:
    info, secret = clients.create(
        "CI robot", "confidential", ["https://ci.example.com/cb"], ["client_credentials"], ["chat"]
    )
    assert secret is not None and secret.startswith("llmgw_cs_") and len(secret) > 40
    assert secret not in repr(info)
    assert clients.authenticate(info.client_id, secret) == info
    with pytest.raises(InvalidClient):
        clients.authenticate(info.client_id, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    with pytest.raises(InvalidClient):
        clients.authenticate(info.client_id, None)
    with pytest.raises(InvalidClient):
        clients.authenticate("c_nobody", secret)
    assert clients.revoke(info.client_id).revoked_at is not None
    assert clients.revoke(info.client_id).revoked_at is not None  # idempotent
    with pytest.raises(InvalidClient):
        clients.authenticate(info.client_id, secret)
    assert info.client_id not in [c.client_id for c in clients.list()]
    assert info.client_id in [c.client_id for c in clients.list(include_revoked=True)]


def test_a_public_client_has_no_secret_and_may_not_send_one(clients: ClientService) -> None:
    info, secret = clients.create(
        "app", "public", ["http://127.0.0.1/cb"], ["authorization_code"], ["chat"]
    )
    assert secret is None
    assert clients.authenticate(info.client_id, None).client_id == info.client_id
    with pytest.raises(InvalidClient):
        clients.authenticate(info.client_id, "anything")


@pytest.mark.parametrize(
    ("kind", "uris", "grants", "scopes"),
    [
        ("weird", ["https://a.example/cb"], ["authorization_code"], ["chat"]),
        ("public", ["https://a.example/cb"], ["client_credentials"], ["chat"]),
        ("public", ["https://a.example/cb"], ["password"], ["chat"]),
        ("public", ["https://a.example/cb"], [], ["chat"]),
        ("public", [], ["authorization_code"], ["chat"]),
        ("public", ["https://a.example/cb"], ["authorization_code"], ["root"]),
        ("public", ["https://a.example/cb"], ["authorization_code"], []),
        # R4: http only for loopback; no fragments, no userinfo, no relative URIs
        ("public", ["http://app.example.com/cb"], ["authorization_code"], ["chat"]),
        ("public", ["http://localhost/cb"], ["authorization_code"], ["chat"]),
        ("public", ["https://a.example/cb#x"], ["authorization_code"], ["chat"]),
        ("public", ["https://good@evil.example/cb"], ["authorization_code"], ["chat"]),
        ("public", ["/cb"], ["authorization_code"], ["chat"]),
        ("public", ["https://a.example:99999/cb"], ["authorization_code"], ["chat"]),
    ],
)
def test_create_refuses_bad_registrations_OAUTH_5(
    clients: ClientService, kind: str, uris: list[str], grants: list[str], scopes: list[str]
) -> None:
    with pytest.raises(UsageError):
        clients.create("x", kind, uris, grants, scopes)
    assert [c.client_id for c in clients.list()] == [CLI_CLIENT_ID]


def test_unknown_client_is_not_found(clients: ClientService) -> None:
    with pytest.raises(NotFound):
        clients.get("c_missing")


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb/",
        "https://app.example.com/CB",
        "https://APP.example.com/cb",
        "https://app.example.com/cb?x=1",
        "http://app.example.com/cb",
        "https://app.example.com:8443/cb",
        "https://app.example.com@evil.example/cb",
        "https://good@app.example.com/cb",
        "https://app.example.com/cb#frag",
        "https://app.example.com/%63b",
        "https://evil.app.example.com/cb",
        "https://app.example.com.evil.example/cb",
        "",
    ],
)
def test_redirect_uri_is_matched_exactly_OAUTH_5(clients: ClientService, uri: str) -> None:
    info, _ = clients.create(
        "web", "confidential", ["https://app.example.com/cb"], ["authorization_code"], ["chat"]
    )
    assert redirect_uri_allowed(info, "https://app.example.com/cb")
    assert not redirect_uri_allowed(info, uri)


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("http://127.0.0.1:49152/cb", True),
        ("http://127.0.0.1/cb", True),
        ("http://127.0.0.1:1/cb", True),
        ("http://127.0.0.1:65535/cb", True),
        ("http://127.0.0.1:49152/cb2", False),
        ("http://localhost:49152/cb", False),
        ("http://127.0.0.1:0/cb", False),
        ("http://127.0.0.1:65536/cb", False),
        ("http://127.0.0.1:49152/cb#x", False),
        ("http://127.0.0.1:49152/cb?x=1", False),
        ("https://127.0.0.1:49152/cb", False),
        ("http://127.0.0.2:49152/cb", False),
        ("http://[::1]:49152/cb", False),  # not registered for this client
    ],
)
def test_loopback_redirect_any_port_OAUTH_6(clients: ClientService, uri: str, ok: bool) -> None:
    info, _ = clients.create(
        "native", "public", ["http://127.0.0.1/cb"], ["authorization_code"], ["chat"]
    )
    assert redirect_uri_allowed(info, uri) is ok
