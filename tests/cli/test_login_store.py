"""Where ``llmgw login`` keeps tokens (the OS keyring, or a 0600 file only with --store-file), the
one-line refusal without a keyring backend, ``whoami``/``logout`` on stored logins, and the
refresh that two processes cannot run twice (refresh tokens rotate: RFC 9700 §4.14.2, OAUTH-8
from the client's side).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from llmgw.admin.remote import RemoteAdmin
from llmgw.cli.credentials import (
    KEYRING_SERVICE,
    CredentialStore,
    LoginAuth,
    StoredLogin,
    keyring_problem,
    normalise_url,
)
from llmgw.errors import AuthError, ConfigError, UpstreamError, UsageError

URL = "http://127.0.0.1:9"  # discard port: nothing answers there


def _token(sub: str = "u-1", email: str = "ann@example.com", exp: float | None = None) -> str:
    claims: dict[str, Any] = {"sub": sub, "email": email, "scope": "chat admin"}
    claims["exp"] = int(exp or time.time() + 900)
    return jwt.encode(claims, os.urandom(32), algorithm="HS256")


def _login(
    url: str = URL, *, expires_in: float = 900, access: str | None = None, rt: str | None = "rt-1"
) -> StoredLogin:
    return StoredLogin(
        url=url,
        client_id="llmgw-cli",
        access_token=access or _token(),
        refresh_token=rt,
        expires_at=time.time() + expires_in,
        scope="chat admin",
        token_endpoint=f"{url}/oauth/token",
        revocation_endpoint=f"{url}/oauth/revoke",
        user="ann@example.com",
        logged_in_at=time.time(),
    )


# -- storage -----------------------------------------------------------------------------------


def test_keyring_present_keeps_the_tokens_there_and_no_secret_on_disk(
    ring: Any, home: Path
) -> None:
    store = CredentialStore(home)
    login = _login()
    store.save(login, "keyring")
    assert store.load(URL) == login
    assert json.loads(ring.data[(KEYRING_SERVICE, URL)])["refresh_token"] == "rt-1"
    assert not store.file.exists()
    on_disk = "".join(p.read_text() for p in home.rglob("*") if p.is_file())
    assert login.access_token not in on_disk and "rt-1" not in on_disk
    assert store.index()[URL]["store"] == "keyring"
    assert "rt-1" not in repr(login) and login.access_token not in repr(login)


def test_no_keyring_backend_is_said_in_one_line(home: Path) -> None:
    """The autouse fixture installs keyring's ``fail`` backend, as on a headless server."""
    problem = keyring_problem()
    assert problem is not None and "\n" not in problem and "keyring" in problem


def test_the_file_store_is_0600_even_with_a_lax_umask(home: Path) -> None:
    old = os.umask(0)
    try:
        store = CredentialStore(home)
        store.save(_login(), "file")
        store.save(_login("https://other.example"), "file")
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.index_file.stat().st_mode) == 0o600
    assert set(json.loads(store.file.read_text())) == {URL, "https://other.example"}
    assert store.load(URL) is not None
    assert not list(home.glob(".*.tmp"))  # the temporary file was renamed, not left behind


def test_a_credentials_file_others_can_read_is_refused(home: Path) -> None:
    store = CredentialStore(home)
    store.save(_login(), "file")
    store.file.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by other users") as caught:
        store.load(URL)
    assert "chmod 600" in (caught.value.hint or "")


def test_forget_removes_the_login_from_keyring_file_and_index(ring: Any, home: Path) -> None:
    store = CredentialStore(home)
    store.save(_login(), "keyring")
    store.save(_login("https://b.example"), "file")
    assert store.forget(URL) and store.forget("https://b.example")
    assert not store.forget(URL)
    assert ring.data == {} and not store.file.exists() and store.index() == {}


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("HTTP://Example.COM:8080/", "http://example.com:8080"),
        ("https://gw.example/base/", "https://gw.example/base"),
        ("http://[::1]:80", "http://[::1]:80"),
    ],
)
def test_logins_are_keyed_by_a_normalised_url(given: str, want: str) -> None:
    assert normalise_url(given) == want


@pytest.mark.parametrize(
    "bad", ["ftp://x", "gw.example", "https://u:p@gw.example", "https://gw/?t=1", "http://h:99999"]
)
def test_a_url_with_credentials_or_not_http_is_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        normalise_url(bad)


# -- the CLI -----------------------------------------------------------------------------------


def test_login_without_keyring_and_without_store_file_is_one_error_line_and_touches_nothing(
    cli: Any, home: Path
) -> None:
    """Exit 2 before any network call (the URL's port is closed: a call would be exit 9)."""
    r = cli("login", "--url", URL)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Error: no OS keyring backend is available")
    assert lines[1].startswith("hint: re-run with --store-file") and len(lines) == 2
    assert not (home / "credentials.json").exists() and not (home / "logins.json").exists()


def test_login_needs_a_url(cli: Any) -> None:
    r = cli("login", "--store-file")
    assert r.exit_code == 2 and "--url" in r.stderr


def test_login_with_store_file_to_an_unreachable_server_is_exit_9_and_stores_nothing(
    cli: Any, home: Path
) -> None:
    r = cli("login", "--url", URL, "--store-file", "--device")
    assert r.exit_code == 9, r.stderr
    assert "cannot reach the server at http://127.0.0.1:9" in r.stderr
    assert not (home / "credentials.json").exists()


def test_whoami_lists_stored_logins_without_tokens(cli: Any, ring: Any, home: Path) -> None:
    store = CredentialStore(home)
    login = _login()
    store.save(login, "keyring")
    r = cli("whoami", "--json")
    assert r.exit_code == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["url"] == URL and row["user"] == "ann@example.com" and row["sub"] == "u-1"
    assert row["scope"] == "chat admin" and row["store"] == "keyring" and row["refreshable"]
    text = cli("whoami")
    assert text.exit_code == 0 and "ann@example.com" in text.stdout and URL in text.stdout
    for out in (r.stdout, text.stdout, r.stderr, text.stderr):
        assert login.access_token not in out and "rt-1" not in out


def test_whoami_print_token_prints_a_fresh_token_alone(cli: Any, ring: Any, home: Path) -> None:
    login = _login()
    CredentialStore(home).save(login, "keyring")
    r = cli("whoami", "--print-token")
    assert r.exit_code == 0 and r.stdout == login.access_token + "\n"


def test_whoami_without_a_login_is_exit_6(cli: Any) -> None:
    r = cli("whoami")
    assert r.exit_code == 6 and "not logged in" in r.stderr
    r = cli("whoami", "--json")
    assert r.exit_code == 6 and json.loads(r.stdout) == []
    r = cli("whoami", "--url", URL)
    assert r.exit_code == 6 and f"llmgw login --url {URL}" in r.stderr


def test_whoami_and_logout_ask_which_server_when_there_are_several(
    cli: Any, ring: Any, home: Path
) -> None:
    store = CredentialStore(home)
    store.save(_login(), "keyring")
    store.save(_login("https://b.example"), "keyring")
    r = cli("logout")
    assert r.exit_code == 2 and "--url" in r.stderr and "https://b.example" in r.stderr
    assert len(json.loads(cli("whoami", "--json").stdout)) == 2


def test_logout_to_an_unreachable_server_keeps_the_tokens_and_local_forgets(
    cli: Any, ring: Any, home: Path
) -> None:
    store = CredentialStore(home)
    store.save(_login(), "keyring")
    r = cli("logout", "--url", URL)
    assert r.exit_code == 9 and store.load(URL) is not None  # nothing half-done
    r = cli("logout", "--local")
    assert r.exit_code == 0 and "not revoked at the server" in r.stdout
    assert store.load(URL) is None and ring.data == {}


def test_remote_commands_without_token_or_login_point_at_llmgw_login(cli: Any) -> None:
    r = cli("--url", URL, "keys", "list")
    assert r.exit_code == 2
    assert f"llmgw login --url {URL}" in r.stderr


# -- refresh -----------------------------------------------------------------------------------


def test_concurrent_refreshes_of_one_login_reach_the_server_once(ring: Any, home: Path) -> None:
    """Five 'processes' (each its own store, so only the flock serialises them) find the access
    token expired at once: one refresh is made (a second would present a spent refresh token and
    the server would revoke the family); the others pick up its result."""
    CredentialStore(home).save(_login(expires_in=-10), "keyring")
    calls: list[str | None] = []

    def renew(old: StoredLogin) -> StoredLogin:
        calls.append(old.refresh_token)
        time.sleep(0.2)
        return StoredLogin(
            **{
                **old.__dict__,
                "access_token": "new-at",
                "refresh_token": "rt-2",
                "expires_at": time.time() + 900,
            }
        )

    got: list[str] = []

    def one() -> None:
        store = CredentialStore(home)
        login = store.load(URL)
        assert login is not None
        got.append(LoginAuth(store, login, renew).token())

    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert calls == ["rt-1"] and got == ["new-at"] * 5
    stored = CredentialStore(home).load(URL)
    assert stored is not None and stored.refresh_token == "rt-2"  # rotated token kept


class _Api(BaseHTTPRequestHandler):
    """A resource server on 127.0.0.1 that accepts only the Bearer token ``good``."""

    seen: list[str] = []

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        type(self).seen.append(auth)
        ok = auth == "Bearer good"
        body = (
            b'{"ok": true}'
            if ok
            else b'{"error": {"message": "invalid token", "type": "authentication_error"}}'
        )
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api() -> Iterator[str]:
    _Api.seen = []
    srv = HTTPServer(("127.0.0.1", 0), _Api)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_a_401_refreshes_once_and_retries(ring: Any, home: Path, api: str) -> None:
    """A token the server stopped accepting before its expiry (revoked, key rotated) is
    refreshed once and the request retried with the new one."""
    store = CredentialStore(home)
    store.save(_login(access="stale"), "keyring")

    def renew(old: StoredLogin) -> StoredLogin:
        return StoredLogin(**{**old.__dict__, "access_token": "good", "refresh_token": "rt-2"})

    login = store.load(URL)
    assert login is not None
    auth = LoginAuth(store, login, renew)
    with httpx.Client(auth=auth) as client:
        assert client.get(api + "/x").status_code == 200
        assert client.get(api + "/y").status_code == 200
    assert _Api.seen == ["Bearer stale", "Bearer good", "Bearer good"]


def test_a_401_whose_refresh_is_refused_gives_the_401(ring: Any, home: Path, api: str) -> None:
    store = CredentialStore(home)
    store.save(_login(access="stale"), "keyring")

    def renew(old: StoredLogin) -> StoredLogin:
        raise AuthError("the login is no longer valid")

    login = store.load(URL)
    assert login is not None
    with httpx.Client(auth=LoginAuth(store, login, renew)) as client:
        assert client.get(api + "/x").status_code == 401
    assert _Api.seen == ["Bearer stale"]


def test_remote_admin_takes_a_login_instead_of_a_token(ring: Any, home: Path, api: str) -> None:
    store = CredentialStore(home)
    store.save(_login(api, access="good"), "keyring")
    login = store.load(api)
    assert login is not None
    admin = RemoteAdmin(api, None, auth=LoginAuth(store, login, lambda x: x))
    with pytest.raises(UpstreamError, match="not a list"):  # the API answers no admin records
        admin.keys_list()
    admin.close()
    assert _Api.seen == ["Bearer good"]
    assert "good" not in repr(admin)
    with pytest.raises(UsageError, match="needs an admin's API key or a login"):
        RemoteAdmin(api, None)


def test_port_9_is_closed() -> None:
    """The tests above rely on nothing listening on 127.0.0.1:9."""
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", 9), timeout=1):
        pass
