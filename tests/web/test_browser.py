"""The whole browser flow in a real browser: Debian's headless Chromium, driven by Playwright
(``executable_path=/usr/bin/chromium``; no browser is ever downloaded).

A real gateway on uvicorn on a free 127.0.0.1 port; a loopback listener stands in for the one
``llmgw login`` opens (RFC 8252). The browser signs in, consents, lands on the loopback redirect
with ``code`` and ``state``; the code redeems with the PKCE verifier; then, on the self-service
page, it creates a key and sees its secret once. Screenshots of the sign-in, consent and profile
pages are taken on the way (no secret on any of them); ``UPDATE_SCREENSHOTS=1`` copies them
to ``docs/screenshots/``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy.engine import Engine

from llmgw.config import Settings
from tests.conftest import IN_CI
from tests.web.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    msg = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(msg + " (CI=true: required)")
    pytest.skip(msg)


class _Loopback:
    """A one-shot loopback redirect listener, like the one ``llmgw login`` starts."""

    def __init__(self) -> None:
        self.hits: list[dict[str, str]] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                if parts.path == "/callback":
                    hits.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                body = b"<!doctype html><title>llmgw login</title><p>Signed in. You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def gateway_url(web_settings: Settings) -> Iterator[str]:
    """The gateway on uvicorn on a free loopback port, which is also its OAuth issuer (the
    metadata's endpoints, which ``llmgw login`` follows, name it)."""
    import socket

    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = web_settings.model_copy(
        update={"identity": web_settings.identity.model_copy(update={"issuer": url})}
    )
    server = serve_in_thread(create_app(settings), port=port)
    try:
        assert server.url == url
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def loopback() -> Iterator[_Loopback]:
    lb = _Loopback()
    try:
        yield lb
    finally:
        lb.close()


@pytest.mark.slow
def test_browser_sign_in_consent_loopback_redirect_then_create_a_key(
    gateway_url: str,
    loopback: _Loopback,
    make_user: Any,
    web_engine: Engine,
    tmp_path: Path,
) -> None:
    _need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from llmgw.auth.keys import KeyService
    from llmgw.identity.codes import redeem_code

    make_user("ann@example.com")
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect_uri = f"http://127.0.0.1:{loopback.port}/callback"
    query = urlencode(
        {
            "client_id": "llmgw-cli",
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": "chat keys:self usage:self",
            "state": "s-8f3a",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{gateway_url}/oauth/authorize?{query}")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.get_by_label("Email").fill("ann@example.com")
            page.get_by_label("Password").fill(PASSWORD)
            page.screenshot(path=str(shots / "login.png"))
            page.get_by_role("button", name="Sign in").click()

            expect(
                page.get_by_role("heading", name="Allow llmgw CLI to use your account?")
            ).to_be_visible()
            page.screenshot(path=str(shots / "consent.png"))
            page.get_by_role("button", name="Allow").click()

            page.wait_for_url(f"{redirect_uri}?*")
            expect(page.get_by_text("You can close this window")).to_be_visible()
            assert len(loopback.hits) == 1
            hit = loopback.hits[0]
            assert hit["state"] == "s-8f3a" and set(hit) == {"code", "state"}
            grant = redeem_code(
                web_engine,
                hit["code"],
                client_id="llmgw-cli",
                redirect_uri=redirect_uri,
                code_verifier=verifier,
            )
            assert grant.scope == "chat keys:self usage:self"

            page.goto(f"{gateway_url}/account")
            expect(page.get_by_role("heading", name="Profile")).to_be_visible()
            page.screenshot(path=str(shots / "profile.png"))

            page.get_by_role("link", name="API keys").click()
            page.get_by_label("Name").fill("laptop")
            page.get_by_label("Expires").select_option("90")
            page.get_by_role("button", name="Create key").click()
            expect(page.get_by_text("it is shown only this once")).to_be_visible()
            secret = page.get_by_label("Secret").input_value()
            assert KeyService(web_engine).authenticate(secret).name == "laptop"
            # The form redirected (POST-redirect-GET): a reload is a GET, shows no secret and
            # creates no second key.
            assert page.url.endswith("/account/keys#new-key")
            page.reload()
            expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()
            assert secret not in page.content()
            assert [k.name for k in KeyService(web_engine).list()] == ["laptop"]
        finally:
            browser.close()
    for name in ("login.png", "consent.png", "profile.png"):
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for name in ("login.png", "consent.png", "profile.png"):
            shutil.copy(shots / name, DOCS / name)


@pytest.mark.slow
def test_browser_completes_a_real_llmgw_login(gateway_url: str, make_user: Any, home: Path) -> None:
    """The issue's flow with the real client: ``llmgw login --no-browser --store-file`` prints
    its authorize address and waits on its own RFC 8252 loopback listener; Chromium signs in and
    consents; the redirect lands on that listener, the CLI redeems the code at /oauth/token
    and stores the login; ``llmgw whoami`` then names the user (a non-admin: no admin scope)."""
    _need_chromium()
    import subprocess
    import sys

    from playwright.sync_api import expect, sync_playwright

    ann = make_user("ann@example.com")
    llmgw = str(Path(sys.executable).with_name("llmgw"))
    env = {**os.environ, "LLMGW_HOME": str(home)}
    proc = subprocess.Popen(
        [llmgw, "login", "--url", gateway_url, "--no-browser", "--store-file", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        address = ""
        said = []
        for _ in range(20):
            line = proc.stderr.readline()
            said.append(line)
            if line.strip().startswith(gateway_url + "/oauth/authorize?"):
                address = line.strip()
                break
        assert address, f"llmgw login printed no authorize address: {said}"
        assert "code_challenge_method=S256" in address and "127.0.0.1" in address
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = browser.new_page()
                page.set_default_timeout(20_000)
                page.goto(address)
                page.get_by_label("Email").fill("ann@example.com")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                expect(page.get_by_role("button", name="Allow")).to_be_visible()
                page.get_by_role("button", name="Allow").click()
                page.wait_for_url("http://127.0.0.1:*/callback?*")
            finally:
                browser.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"Logged in to {gateway_url}" in out
    who = subprocess.run(
        [llmgw, "whoami", "--json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert who.returncode == 0, who.stderr
    import json

    [stored] = json.loads(who.stdout)
    assert stored["url"] == gateway_url and stored["user"] == str(ann.id)
    assert "chat" in stored["scope"] and "admin" not in stored["scope"]
