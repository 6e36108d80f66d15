"""``/oauth/authorize``: redirect URI validation first, then errors to the validated URI with
``state``, sign-in, consent, a code bound to the PKCE challenge (OAUTH-1, -5, -6, -7)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.web.conftest import hidden, sign_in

VERIFIER = "v" * 43 + "-._~abc"
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)
LOOPBACK = "http://127.0.0.1:49152/callback"


def params(**over: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "client_id": "llmgw-cli",
        "redirect_uri": LOOPBACK,
        "response_type": "code",
        "scope": "chat keys:self",
        "state": "st-123",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def query_of(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def web_client(web_engine: Engine) -> Any:
    """A confidential web client registered with one https redirect URI."""
    from llmgw.identity.clients import ClientService

    info, _ = ClientService(web_engine).create(
        "Notebook", "confidential", ["https://app.example.com/cb"], ["authorization_code"], ["chat"]
    )
    return info


async def consent(browser: httpx.AsyncClient, **over: str | None) -> httpx.Response:
    return await browser.get("/oauth/authorize", params=params(**over))


async def test_oauth_1_no_challenge_plain_or_omitted_method_is_invalid_request_at_the_redirect(
    browser: httpx.AsyncClient,
) -> None:
    """OAUTH-1: no challenge, method plain, method omitted: invalid_request, delivered to the
    validated redirect URI with state (before any sign-in is asked for)."""
    for over in (
        {"code_challenge": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": "short"},
    ):
        r = await consent(browser, **over)
        assert r.status_code == 303, over
        assert r.headers["location"].startswith(LOOPBACK + "?")
        q = query_of(r)
        assert q["error"] == "invalid_request" and q["state"] == "st-123"


async def test_oauth_3_a_confidential_client_gets_no_pkce_exemption(
    browser: httpx.AsyncClient, web_client: Any, web_engine: Engine
) -> None:
    """OAUTH-3 (PKCE downgrade, RFC 9700 §4.8): a confidential client's request without a
    challenge is refused at authorize like a public client's, and no code can exist without
    one, so a ``code_verifier`` can never meet a challenge-less code at /oauth/token."""
    import uuid

    from llmgw.errors import InvalidRequest
    from llmgw.identity.codes import issue_code

    r = await consent(
        browser, client_id=web_client.client_id, redirect_uri="https://app.example.com/cb",
        scope="chat", code_challenge=None, code_challenge_method=None,
    )  # fmt: skip
    assert r.status_code == 303
    assert r.headers["location"].startswith("https://app.example.com/cb?")
    assert query_of(r)["error"] == "invalid_request"
    with pytest.raises(InvalidRequest):
        issue_code(
            web_engine, web_client.client_id, uuid.uuid4(), "https://app.example.com/cb", "chat", ""
        )


async def test_oauth_7_implicit_grant_is_unsupported_response_type(
    browser: httpx.AsyncClient,
) -> None:
    """OAUTH-7: response_type=token is refused (no implicit grant) at the redirect URI."""
    r = await consent(browser, response_type="token")
    assert r.status_code == 303
    assert query_of(r)["error"] == "unsupported_response_type"
    assert "access_token" not in r.headers["location"]


async def test_unknown_scope_is_invalid_scope_at_the_redirect(browser: httpx.AsyncClient) -> None:
    r = await consent(browser, scope="chat everything")
    assert query_of(r) == {
        "error": "invalid_scope",
        "error_description": "unknown scope 'everything'",
        "state": "st-123",
    }


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb/",  # trailing slash
        "https://app.example.com/CB",  # case in the path
        "https://APP.example.com/cb",  # case in the host
        "https://app.example.com/cb?x=1",  # extra query
        "http://app.example.com/cb",  # https -> http
        "https://app.example.com:8443/cb",  # other port (not loopback)
        "https://app.example.com@evil.example/cb",  # user@host
        "https://evil.example@app.example.com/cb",
        "https://app.example.com/cb#frag",  # fragment
        "https://app.example.com/%63b",  # percent-encoding of the same path
        "https://evil.app.example.com/cb",  # sub-domain
        "https://app.example.com.evil.example/cb",
        "",
    ],
)
async def test_oauth_5_redirect_uri_variants_get_an_error_page_and_no_redirect(
    browser: httpx.AsyncClient, web_client: Any, uri: str
) -> None:
    """OAUTH-5: any variant of a registered redirect URI is an error page, never a Location,
    also when the request has other errors that would otherwise be redirected."""
    for over in ({}, {"response_type": "token"}, {"code_challenge": None}):
        r = await consent(browser, client_id=web_client.client_id, redirect_uri=uri, **over)
        assert r.status_code == 400
        assert "location" not in r.headers
        assert "Invalid redirect address" in r.text
        assert "evil" not in r.text


async def test_unknown_or_revoked_client_is_an_error_page(
    browser: httpx.AsyncClient, web_engine: Engine, web_client: Any
) -> None:
    from llmgw.identity.clients import ClientService

    r = await consent(browser, client_id="nope")
    assert r.status_code == 400 and "location" not in r.headers
    assert "Unknown application" in r.text
    ClientService(web_engine).revoke(web_client.client_id)
    r = await consent(
        browser, client_id=web_client.client_id, redirect_uri="https://app.example.com/cb"
    )
    assert r.status_code == 400 and "location" not in r.headers


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("http://127.0.0.1:49152/callback", True),
        ("http://127.0.0.1:1/callback", True),
        ("http://[::1]:49152/callback", True),
        ("http://127.0.0.1/callback", True),
        ("http://127.0.0.1:49152/callback2", False),
        ("http://127.0.0.1:49152/cb", False),
        ("http://localhost:49152/callback", False),
        ("http://127.0.0.1:49152/callback?x=1", False),
        ("http://127.0.0.2:49152/callback", False),
        ("https://127.0.0.1:49152/callback", False),
    ],
)
async def test_oauth_6_loopback_redirect_any_port_but_nothing_else(
    browser: httpx.AsyncClient, uri: str, accepted: bool
) -> None:
    """OAUTH-6: registered http://127.0.0.1/callback (llmgw-cli): any port accepted (RFC 8252
    §7.3), another path or localhost rejected (§8.3)."""
    r = await consent(browser, redirect_uri=uri)
    if accepted:
        assert r.status_code == 200 and "Sign in" in r.text  # on to sign-in
    else:
        assert r.status_code == 400 and "location" not in r.headers


async def test_sign_in_then_consent_then_303_with_code_and_state(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    """The whole browser side: sign-in page (names the app), consent page, Allow -> 303 to the
    loopback URI with code and state; the code redeems only with the verifier (OAUTH-7: 303)."""
    from llmgw.identity.codes import redeem_code

    make_user("ann@example.com")
    r = await consent(browser)
    assert r.status_code == 200 and "Sign in to continue to <strong>llmgw CLI</strong>" in r.text
    next_url = hidden(r.text, "next")
    assert next_url.startswith("/oauth/authorize?")
    r = await sign_in(browser, "ann@example.com", next_url=next_url)
    assert r.status_code == 303 and r.headers["location"] == next_url
    r = await browser.get(next_url)
    assert r.status_code == 200
    assert "Allow <em>llmgw CLI</em>" in r.text and "keys:self" in r.text
    assert "form-action 'self' http://127.0.0.1:49152" in r.headers["content-security-policy"]
    form = {"csrf": hidden(r.text, "csrf"), "decision": "allow"}
    form.update({k: hidden(r.text, k) for k in params()})
    r = await browser.post("/oauth/authorize", data=form)
    assert r.status_code == 303
    assert r.headers["location"].startswith(LOOPBACK + "?")
    q = query_of(r)
    assert q["state"] == "st-123" and set(q) == {"code", "state"}
    grant = redeem_code(
        web_engine, q["code"], client_id="llmgw-cli", redirect_uri=LOOPBACK, code_verifier=VERIFIER
    )
    assert grant.scope == "chat keys:self"


async def test_deny_is_access_denied_with_state(browser: httpx.AsyncClient, make_user: Any) -> None:
    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    r = await consent(browser)
    form = {"csrf": hidden(r.text, "csrf"), "decision": "deny", **params()}
    r = await browser.post("/oauth/authorize", data=form)
    assert r.status_code == 303
    assert query_of(r)["error"] == "access_denied" and query_of(r)["state"] == "st-123"


async def test_a_user_cannot_grant_admin_an_admin_can(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    from llmgw.identity.codes import redeem_code

    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    r = await consent(browser, scope="chat admin")
    assert "Not granted, because your account does not have it: admin" in r.text
    form = {"csrf": hidden(r.text, "csrf"), "decision": "allow", **params(scope="chat admin")}
    r = await browser.post("/oauth/authorize", data=form)
    code = query_of(r)["code"]
    grant = redeem_code(
        web_engine, code, client_id="llmgw-cli", redirect_uri=LOOPBACK, code_verifier=VERIFIER
    )
    assert grant.scope == "chat"


async def test_csrf_consent_post_without_the_token_or_from_another_origin_is_refused(
    browser: httpx.AsyncClient, make_user: Any
) -> None:
    """CSRF: a consent POST with a missing or wrong token, or an Origin of another site, is a
    403 page, never a redirect with a code."""
    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    r = await consent(browser)
    good = hidden(r.text, "csrf")
    for csrf, headers in (
        (None, {}),
        ("x" * 43, {}),
        (good, {"Origin": "https://evil.example"}),
    ):
        form = {"decision": "allow", **params()}
        if csrf is not None:
            form["csrf"] = csrf
        r = await browser.post("/oauth/authorize", data=form, headers=headers)
        assert r.status_code == 403 and "location" not in r.headers


async def test_oauth_7_clickjacking_headers_and_no_cors_on_authorize(
    browser: httpx.AsyncClient, make_user: Any
) -> None:
    """OAUTH-7: every page (sign-in, consent, error) forbids framing; OPTIONS with an Origin
    gets no CORS allowance."""
    make_user("ann@example.com")
    pages = [await consent(browser), await consent(browser, client_id="nope")]
    await sign_in(browser, "ann@example.com")
    pages += [await consent(browser), await browser.get("/account"), await browser.get("/device")]
    for r in pages:
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert "script-src" not in r.headers["content-security-policy"]
    r = await browser.options(
        "/oauth/authorize",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code in (404, 405)
    assert not any(h.lower().startswith("access-control-") for h in r.headers)


async def test_repeated_parameter_is_an_error_page(browser: httpx.AsyncClient) -> None:
    r = await browser.get(
        "/oauth/authorize?client_id=llmgw-cli&client_id=other&redirect_uri=" + LOOPBACK
    )
    assert r.status_code == 400 and "location" not in r.headers
