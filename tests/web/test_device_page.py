"""``/device``: the device flow's verification page (RFC 8628 §3.3, §5.1, §5.3; OAUTH-11)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from tests.web.conftest import hidden, sign_in


@pytest.fixture
def grant(web_engine: Engine) -> Any:
    from llmgw.identity import device

    return device.start(web_engine, "llmgw-cli", "chat usage:self", base_url="http://testserver")


async def test_signed_out_the_link_leads_to_sign_in_then_back_with_the_code(
    browser: httpx.AsyncClient, make_user: Any, grant: Any
) -> None:
    make_user("ann@example.com")
    r = await browser.get("/device", params={"user_code": grant.user_code.lower()})
    assert r.status_code == 200 and "Sign in" in r.text
    next_url = hidden(r.text, "next")
    assert next_url == f"/device?user_code={grant.user_code}"
    r = await sign_in(browser, "ann@example.com", next_url=next_url)
    assert r.headers["location"] == next_url
    r = await browser.get(next_url)
    assert f'value="{grant.user_code}"' in r.text


async def test_approve_shows_who_asks_then_the_device_gets_its_grant(
    browser: httpx.AsyncClient, make_user: Any, grant: Any, web_engine: Engine
) -> None:
    from llmgw.identity import device

    user = make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    page = await browser.get("/device")
    csrf = hidden(page.text, "csrf")
    typed = grant.user_code.replace("-", " ").lower()  # case and punctuation do not matter
    r = await browser.post("/device", data={"csrf": csrf, "user_code": typed, "action": "lookup"})
    assert r.status_code == 200
    assert "A device is asking to act as <strong>ann@example.com</strong>" in r.text
    assert "llmgw CLI" in r.text and "usage:self" in r.text
    r = await browser.post(
        "/device",
        data={"csrf": csrf, "user_code": hidden(r.text, "user_code"), "action": "approve"},
    )
    assert r.status_code == 200 and "Device connected" in r.text
    approved = device.poll(web_engine, grant.device_code, client_id="llmgw-cli")
    assert approved.user_id == user.id and approved.scope == "chat usage:self"


async def test_deny_refuses_the_device(
    browser: httpx.AsyncClient, make_user: Any, grant: Any, web_engine: Engine
) -> None:
    from llmgw.identity import device
    from llmgw.identity.errors import AccessDenied

    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    csrf = hidden((await browser.get("/device")).text, "csrf")
    r = await browser.post(
        "/device", data={"csrf": csrf, "user_code": grant.user_code, "action": "deny"}
    )
    assert "Request denied" in r.text
    with pytest.raises(AccessDenied):
        device.poll(web_engine, grant.device_code, client_id="llmgw-cli")


async def test_device_post_needs_the_csrf_token(
    browser: httpx.AsyncClient, make_user: Any, grant: Any, web_engine: Engine
) -> None:
    """CSRF: an approval POST without the session's token approves nothing."""
    from llmgw.identity import device

    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    r = await browser.post("/device", data={"user_code": grant.user_code, "action": "approve"})
    assert r.status_code == 403
    assert device.pending(web_engine, grant.user_code) is not None


async def test_oauth_11_fifty_wrong_user_codes_from_one_address_get_429(
    browser: httpx.AsyncClient, make_user: Any, grant: Any, web_engine: Engine
) -> None:
    """OAUTH-11: 50 wrong user codes from one address: 400 for the first 10, then 429 with
    Retry-After (the right code is refused too while locked); user codes are 8 letters of the
    20-consonant alphabet."""
    from llmgw.identity import device

    assert len(device.normalize_user_code(grant.user_code)) == 8
    assert set(device.normalize_user_code(grant.user_code)) <= set("BCDFGHJKLMNPQRSTVWXZ")
    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    csrf = hidden((await browser.get("/device")).text, "csrf")
    statuses = []
    for i in range(50):
        wrong = "".join("BCDFGHJKLMNPQRSTVWXZ"[(i * 7 + j) % 20] for j in range(8))
        if wrong == device.normalize_user_code(grant.user_code):
            continue
        r = await browser.post(
            "/device", data={"csrf": csrf, "user_code": wrong, "action": "lookup"}
        )
        statuses.append(r.status_code)
    assert statuses[:10] == [400] * 10
    assert set(statuses[10:]) == {429}
    r = await browser.post(
        "/device", data={"csrf": csrf, "user_code": grant.user_code, "action": "approve"}
    )
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert device.pending(web_engine, grant.user_code) is not None


async def _approve(
    browser: httpx.AsyncClient, user_code: str
) -> tuple[httpx.Response, httpx.Response]:
    """The confirmation page, then the answer to approving it."""
    csrf = hidden((await browser.get("/device")).text, "csrf")
    data = {"csrf": csrf, "user_code": user_code}
    shown = await browser.post("/device", data={**data, "action": "lookup"})
    return shown, await browser.post("/device", data={**data, "action": "approve"})


async def _token(browser: httpx.AsyncClient, device_code: str) -> dict[str, Any]:
    r = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device_code,
            "client_id": "llmgw-cli",
        },
    )
    return dict(r.json())


async def test_oauth_11_a_device_asking_for_admin_gets_it_only_from_an_admin(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    """OAUTH-11 (device flow) with the admin scope: a user who is not an admin is shown, and
    approves, the request without ``admin``; the device's token has ``chat`` only and is refused
    by the admin API. An admin approving the same request gets ``chat admin``."""
    from llmgw.identity import device

    make_user("ann@example.com")
    make_user("root@example.com", role="admin")
    asked = device.start(web_engine, "llmgw-cli", "chat admin", base_url="http://testserver")
    await sign_in(browser, "ann@example.com")
    confirm, r = await _approve(browser, asked.user_code)
    assert "Device connected" in r.text
    assert "chat" in confirm.text and "admin" not in confirm.text.replace("ann@example.com", "")
    body = await _token(browser, asked.device_code)
    assert body["scope"] == "chat"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await browser.get("/admin/v1/keys", headers=bearer)).status_code == 403
    # the audit row says what was approved, and what was asked
    from llmgw.admin.audit import AuditService

    entries = AuditService(web_engine).list(action="oauth.device_approve")
    assert [e["detail"] for e in entries] == [{"scope": "chat", "requested": "chat admin"}]

    browser.cookies.clear()
    again = device.start(web_engine, "llmgw-cli", "chat admin", base_url="http://testserver")
    await sign_in(browser, "root@example.com")
    confirm, r = await _approve(browser, again.user_code)
    assert "Device connected" in r.text and "admin" in confirm.text.replace("root@example", "")
    admin = await _token(browser, again.device_code)
    assert admin["scope"] == "chat admin"
    bearer = {"Authorization": f"Bearer {admin['access_token']}"}
    assert (await browser.get("/admin/v1/keys", headers=bearer)).status_code == 200


async def test_oauth_11_a_device_asking_only_for_admin_is_refused_to_a_non_admin(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    from llmgw.identity import device

    make_user("ann@example.com")
    asked = device.start(web_engine, "llmgw-cli", "admin", base_url="http://testserver")
    await sign_in(browser, "ann@example.com")
    csrf = hidden((await browser.get("/device")).text, "csrf")
    shown = await browser.post(
        "/device", data={"csrf": csrf, "user_code": asked.user_code, "action": "lookup"}
    )
    assert shown.status_code == 403 and "does not hold" in shown.text
    r = await browser.post(
        "/device", data={"csrf": csrf, "user_code": asked.user_code, "action": "approve"}
    )
    assert "Request denied" in r.text  # a forged approval denies instead
    assert (await _token(browser, asked.device_code))["error"] == "access_denied"


def test_an_approval_may_narrow_the_scope_never_widen_it(
    web_engine: Engine, make_user: Any
) -> None:
    from llmgw.identity import device

    user = make_user("ann@example.com")
    asked = device.start(web_engine, "llmgw-cli", "chat", base_url="http://testserver")
    with pytest.raises(ValueError, match="never widen"):
        device.approve(web_engine, asked.user_code, user.id, scope="chat admin")
    assert device.pending(web_engine, asked.user_code) is not None  # still undecided
