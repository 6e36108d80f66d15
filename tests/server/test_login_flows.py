"""``llmgw login``'s OAuth client against a real llmgw server (uvicorn on a free 127.0.0.1 port):
RFC 8414 discovery, the device flow's polling rules (OAUTH-11 from the client's side: pending,
``slow_down`` adds 5 s for every later poll, expiry, denial), refresh-token rotation (OAUTH-8: the
spent refresh token is refused and the family with it) and revocation (OAUTH-9/OAUTH-10).

The approval step calls the core service the /device page calls (``identity.device.approve``);
the page itself is driven over HTTP in test_login_e2e.py. Polling uses an injected clock and
sleep, so the backing-off is checked without waiting for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmgw.cli.login_flows import Endpoints, OAuthClient, OAuthError
from llmgw.errors import AuthError

from .conftest import free_port


class FakeTime:
    """The client's clock and sleep: sleeping moves the clock, never the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server_url(make_settings: Any, emulator: Any, test_engine: Any) -> Iterator[str]:
    """An llmgw server whose issuer is its own address."""
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    port = free_port()
    settings = make_settings(emulator.url, host="127.0.0.1", port=port)
    server = serve_in_thread(create_app(settings), port=port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def admin(test_engine: Any) -> Any:
    from llmgw.auth.users import UserService

    return UserService(test_engine).create("ann@example.com", role="admin")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        yield client


def test_discovery_reads_the_servers_metadata(server_url: str, http: httpx.Client) -> None:
    client = OAuthClient(server_url, http)
    assert client.endpoints == Endpoints.default(server_url)


def test_oauth11_polling_too_fast_gets_slow_down_and_backs_off_until_the_code_expires(
    server_url: str, http: httpx.Client
) -> None:
    """The injected sleep returns at once, so the server sees polls faster than ``interval``:
    the client adds 5 s on each ``slow_down`` (RFC 8628 §3.5) and gives up once ``expires_in``
    has passed on its clock, with exit 6."""
    t = FakeTime()
    client = OAuthClient(server_url, http, clock=t.clock, sleep=t.sleep)
    grant = client.device_start("chat")
    assert grant.interval == 5 and grant.expires_in == 600
    assert len(grant.user_code) == 9 and grant.verification_uri == f"{server_url}/device"
    slowed: list[float] = []
    with pytest.raises(AuthError, match="expired before it was approved") as caught:
        client.device_poll(grant, scope="chat", on_slow_down=slowed.append)
    assert caught.value.exit_code == 6
    assert slowed[:3] == [10, 15, 20]  # +5 s for this and every later poll
    assert t.sleeps[0] == 5 and t.sleeps[1:] == sorted(t.sleeps[1:])
    assert sum(t.sleeps) <= 600  # never polled past expires_in


def test_an_approved_device_gets_tokens_once(
    server_url: str, http: httpx.Client, test_engine: Any, admin: Any
) -> None:
    from llmgw.identity import device

    t = FakeTime()
    client = OAuthClient(server_url, http, clock=t.clock, sleep=t.sleep)
    grant = client.device_start("chat admin")
    device.approve(test_engine, grant.user_code, admin.id)
    tokens = client.device_poll(grant, scope="chat admin")
    assert tokens.access_token.count(".") == 2 and tokens.refresh_token
    assert set(tokens.scope.split()) == {"chat", "admin"}
    assert tokens.expires_at == pytest.approx(t.now + 900, abs=5)
    # The device code is spent: polling again is invalid_grant, which ends polling.
    with pytest.raises(OAuthError) as again:
        client.device_poll(grant, scope="chat admin")
    assert again.value.error == "invalid_grant"


def test_a_denied_device_ends_polling_with_exit_6(
    server_url: str, http: httpx.Client, test_engine: Any
) -> None:
    from llmgw.identity import device

    t = FakeTime()
    client = OAuthClient(server_url, http, clock=t.clock, sleep=t.sleep)
    grant = client.device_start(None)
    device.deny(test_engine, grant.user_code)
    with pytest.raises(AuthError, match="denied") as caught:
        client.device_poll(grant, scope=None)
    assert caught.value.exit_code == 6


def _logged_in(server_url: str, http: httpx.Client, test_engine: Any, admin: Any) -> Any:
    from llmgw.identity import device

    t = FakeTime()
    client = OAuthClient(server_url, http, clock=t.clock, sleep=t.sleep)
    grant = client.device_start("chat admin")
    device.approve(test_engine, grant.user_code, admin.id)
    return client, client.device_poll(grant, scope="chat admin")


def test_oauth8_refresh_rotates_and_the_spent_token_revokes_the_family(
    server_url: str, http: httpx.Client, test_engine: Any, admin: Any
) -> None:
    client, first = _logged_in(server_url, http, test_engine, admin)
    second = client.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    with pytest.raises(OAuthError) as reused:
        client.refresh(first.refresh_token)
    assert reused.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as family:  # the reuse revoked the newer one too
        client.refresh(second.refresh_token)
    assert family.value.error == "invalid_grant"


def test_oauth9_revoking_the_refresh_token_ends_the_login(
    server_url: str, http: httpx.Client, test_engine: Any, admin: Any
) -> None:
    client, tokens = _logged_in(server_url, http, test_engine, admin)
    ok = http.get(
        f"{server_url}/v1/models", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    assert ok.status_code == 200
    client.revoke(tokens.refresh_token, "refresh_token")
    client.revoke(tokens.access_token, "access_token")
    client.revoke("not-a-token", "refresh_token")  # OAUTH-10: 200 for garbage too
    with pytest.raises(OAuthError) as refused:
        client.refresh(tokens.refresh_token)
    assert refused.value.error == "invalid_grant"
    gone = http.get(
        f"{server_url}/v1/models", headers={"Authorization": f"Bearer {tokens.access_token}"}
    )
    assert gone.status_code == 401


def _approve_next(engine: Any, user_id: Any, action: str = "approve") -> threading.Thread:
    """A thread that approves (or denies) the next device login waiting in the database, as the
    /device page does once the user has typed the code."""
    import sqlalchemy as sa

    from llmgw.identity import device
    from llmgw.storage.tables import OAuthDeviceCode

    table = OAuthDeviceCode.__table__  # type: ignore[attr-defined]
    undecided = sa.select(table.c.user_code).where(
        table.c.approved_user_id.is_(None), table.c.denied_at.is_(None), table.c.used_at.is_(None)
    )

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(undecided).first()
            if row is not None:
                if action == "approve":
                    device.approve(engine, row[0], user_id)
                else:
                    device.deny(engine, row[0])
                return
            time.sleep(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_cli_login_refresh_relogin_and_logout_against_a_real_server(
    cli: Any,
    server_url: str,
    test_engine: Any,
    admin: Any,
    ring: Any,
    home: Path,
    http: httpx.Client,
) -> None:
    """The real CLI end to end in one process: ``login --device`` stores the tokens in the
    keyring; ``--url keys list`` uses them; an access token near expiry is refreshed (rotation:
    the new refresh token is stored); logging in again revokes the replaced login; ``logout``
    revokes at the server (OAUTH-9) and forgets."""
    from llmgw.cli.credentials import CredentialStore

    store = CredentialStore(home)
    approver = _approve_next(test_engine, admin.id)
    r = cli("login", "--url", server_url, "--device")
    approver.join(5)
    assert r.exit_code == 0, r.stderr
    assert f"Logged in to {server_url} as ann@example.com" in r.stdout
    assert "tokens kept in the OS keyring" in r.stdout
    assert "enter the code:" in r.stderr and f"{server_url}/device" in r.stderr
    first = store.load(server_url)
    assert first is not None and first.refresh_token
    listed = cli("--url", server_url, "keys", "list", "--json")
    assert listed.exit_code == 0, listed.stderr

    # An access token about to expire is refreshed before use; the rotated refresh token is kept.
    store.save(replace(first, expires_at=time.time() + 5), "keyring")
    assert cli("--url", server_url, "users", "list", "--json").exit_code == 0
    refreshed = store.load(server_url)
    assert refreshed is not None
    assert refreshed.refresh_token != first.refresh_token
    assert refreshed.access_token != first.access_token
    client = OAuthClient(server_url, http)
    with pytest.raises(OAuthError):  # the spent one (rotation); this also revokes the family
        client.refresh(first.refresh_token)

    # That reuse revoked the family: the next refresh fails, the command says to log in again.
    store.save(replace(refreshed, expires_at=time.time() + 5), "keyring")
    gone = cli("--url", server_url, "keys", "list")
    assert gone.exit_code == 6 and "llmgw login --url" in gone.stderr

    # Logging in again replaces the login and revokes the one it replaces.
    approver = _approve_next(test_engine, admin.id)
    assert cli("login", "--url", server_url, "--device").exit_code == 0
    approver.join(5)
    old = store.load(server_url)
    assert old is not None
    approver = _approve_next(test_engine, admin.id)
    assert cli("login", "--url", server_url, "--device").exit_code == 0
    approver.join(5)
    with pytest.raises(OAuthError) as replaced:
        client.refresh(old.refresh_token)  # type: ignore[arg-type]
    assert replaced.value.error == "invalid_grant"

    current = store.load(server_url)
    assert current is not None
    out = cli("logout")
    assert out.exit_code == 0 and "revoked and forgotten" in out.stdout
    assert store.load(server_url) is None and ring.data == {}
    with pytest.raises(OAuthError):
        client.refresh(current.refresh_token)  # type: ignore[arg-type]
    refused = http.get(
        f"{server_url}/v1/models", headers={"Authorization": f"Bearer {current.access_token}"}
    )
    assert refused.status_code == 401


def test_cli_device_login_denied_is_exit_6(
    cli: Any, server_url: str, test_engine: Any, admin: Any, ring: Any
) -> None:
    approver = _approve_next(test_engine, admin.id, "deny")
    r = cli("login", "--url", server_url, "--device")
    approver.join(5)
    assert r.exit_code == 6
    assert "Error: the login was denied on the approval page" in r.stderr
    assert ring.data == {}
