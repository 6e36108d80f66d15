"""``/account``: profile, keys (secret shown once, revoke), usage by day and model, tokens and
sessions; a user sees only their own, an admin everyone's (AUTH-5 for the pages)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from tests.web.conftest import BASE, hidden, sign_in


async def test_signed_out_account_pages_send_you_to_sign_in(browser: httpx.AsyncClient) -> None:
    for path in ("/account", "/account/keys", "/account/usage", "/account/tokens"):
        r = await browser.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Faccount")


async def test_create_a_key_secret_shown_once_and_it_authenticates(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    from llmgw.admin.audit import AuditService
    from llmgw.auth.keys import KeyService

    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    page = await browser.get("/account/keys")
    assert "No keys yet." in page.text
    posted = await browser.post(
        "/account/keys", data={"csrf": hidden(page.text, "csrf"), "name": "laptop", "expires": "30"}
    )
    # POST-redirect-GET: the form answers 303; the page it leads to shows the secret once
    assert posted.status_code == 303 and posted.headers["location"] == "/account/keys#new-key"
    flash = posted.cookies.get("llmgw_flash")
    assert flash and "llmgw_" not in flash  # sealed: the secret is not readable in the cookie
    r = await browser.get("/account/keys")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    m = re.search(r'id="secret" class="mono" readonly value="([^"]+)"', r.text)
    assert m and "shown only this once" in r.text
    secret = m.group(1)
    info = KeyService(web_engine).authenticate(secret)
    assert info.user_email == "ann@example.com" and info.name == "laptop"
    assert info.expires_at is not None
    again = await browser.get("/account/keys")  # a reload: no secret, and no second key
    assert secret not in again.text and info.prefix in again.text
    assert len(KeyService(web_engine).list()) == 1
    # the sealed cookie replayed (a reload that still sent it, or another session) shows nothing
    browser.cookies.set("llmgw_flash", flash, path="/account/keys")
    assert secret in (await browser.get("/account/keys")).text  # the same session, in time
    browser.cookies.clear()
    await sign_in(browser, "ann@example.com")  # a new session of the same user
    browser.cookies.set("llmgw_flash", flash, path="/account/keys")
    assert secret not in (await browser.get("/account/keys")).text
    entry = AuditService(web_engine).list(limit=5)[0]
    assert entry["action"] == "keys.create" and entry["actor"] == "ann@example.com"
    assert entry["source"] == "web" and entry["actor_kind"] == "session"
    assert secret not in str(entry)


async def test_bad_key_input_writes_nothing(browser: httpx.AsyncClient, make_user: Any) -> None:
    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    csrf = hidden((await browser.get("/account/keys")).text, "csrf")
    for data in (
        {"name": "", "expires": ""},
        {"name": "x", "expires": "7"},
        {"name": "x" * 201, "expires": ""},
    ):
        r = await browser.post("/account/keys", data={"csrf": csrf, **data})
        assert r.status_code == 400 and 'role="alert"' in r.text
    assert "No keys yet." in (await browser.get("/account/keys")).text


async def test_revoke_own_key_but_someone_elses_is_404(
    web_app: Any, make_user: Any, web_engine: Engine
) -> None:
    """AUTH-5 on the pages: Bob cannot revoke (or see) Ann's key; the answer is 404."""
    from llmgw.auth.keys import KeyService

    make_user("ann@example.com")
    make_user("bob@example.com")
    keys = KeyService(web_engine)
    ann_key = keys.create("ann-ci", user="ann@example.com")
    bob_key = keys.create("bob-ci", user="bob@example.com")

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=web_app), base_url=BASE)

    async with client() as bob:
        await sign_in(bob, "bob@example.com")
        page = await bob.get("/account/keys")
        assert "bob-ci" in page.text and "ann-ci" not in page.text
        csrf = hidden(page.text, "csrf")
        for ref in (str(ann_key.info.id), str(uuid.uuid4()), "not-a-uuid"):
            r = await bob.post("/account/keys/revoke", data={"csrf": csrf, "id": ref})
            assert r.status_code == 404
        assert keys.authenticate(ann_key.secret).revoked_at is None
        r = await bob.post("/account/keys/revoke", data={"csrf": csrf, "id": str(bob_key.info.id)})
        assert r.status_code == 303
        assert keys.get(str(bob_key.info.id)).revoked_at is not None


async def test_admin_sees_and_revokes_everyones_keys(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    from llmgw.auth.keys import KeyService

    make_user("root@example.com", role="admin")
    make_user("ann@example.com")
    ann_key = KeyService(web_engine).create("ann-ci", user="ann@example.com")
    await sign_in(browser, "root@example.com")
    profile = await browser.get("/account")
    assert "ann@example.com" in profile.text and "<h2>Users</h2>" in profile.text
    page = await browser.get("/account/keys")
    assert "ann-ci" in page.text and '<th scope="col">Owner</th>' in page.text
    r = await browser.post(
        "/account/keys/revoke", data={"csrf": hidden(page.text, "csrf"), "id": str(ann_key.info.id)}
    )
    assert r.status_code == 303
    assert KeyService(web_engine).get(str(ann_key.info.id)).revoked_at is not None


def _usage(engine: Engine, user_id: Any, model: str, day_offset: int, cost: str) -> None:
    from sqlmodel import Session

    from llmgw.storage.tables import UsageRecord, utcnow

    with Session(engine) as s:
        s.add(
            UsageRecord(
                request_id=uuid.uuid4().hex,
                created_at=utcnow() - timedelta(days=day_offset),
                user_id=user_id,
                provider="openai",
                model=model,
                total_tokens=100,
                prompt_tokens=60,
                completion_tokens=40,
                cost=Decimal(cost),
            )
        )
        s.commit()


async def test_usage_by_day_and_model_only_your_own(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine
) -> None:
    ann = make_user("ann@example.com")
    bob = make_user("bob@example.com")
    _usage(web_engine, ann.id, "gpt-4o-mini", 0, "0.0012")
    _usage(web_engine, ann.id, "gpt-4o-mini", 0, "0.0008")
    _usage(web_engine, ann.id, "gpt-4o", 1, "0.5")
    _usage(web_engine, ann.id, "gpt-4o", 40, "9")  # outside 30 days
    _usage(web_engine, bob.id, "secret-model", 0, "7")
    await sign_in(browser, "ann@example.com")
    r = await browser.get("/account/usage")
    rows = re.findall(r"<tr><td>([\d-]+)</td><td>([^<]+)</td><td class=\"num\">(\d+)</td>", r.text)
    assert [(m, n) for _, m, n in rows] == [("openai/gpt-4o-mini", "2"), ("openai/gpt-4o", "1")]
    assert rows[0][0] > rows[1][0]  # newest day first
    assert "secret-model" not in r.text
    assert "<strong>3</strong> requests" in r.text
    # no provider configured here: the currency is unknown, named as such, never assumed
    assert "cost <strong>0.502 XXX:openai</strong>" in r.text
    r = await browser.get("/account/usage", params={"days": "90"})
    assert "<strong>4</strong> requests" in r.text


async def test_sessions_listed_and_ended(web_app: Any, make_user: Any) -> None:
    make_user("ann@example.com")

    def client(ua: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web_app), base_url=BASE, headers={"User-Agent": ua}
        )

    async with client("Laptop/1.0") as laptop, client("Phone/2.0") as phone:
        await sign_in(laptop, "ann@example.com")
        await sign_in(phone, "ann@example.com")
        page = await laptop.get("/account/tokens")
        rows = re.findall(r"<tr>(.*?)</tr>", page.text, flags=re.S)
        sessions = {
            ("Phone" in row, "this one" in row): re.search(
                r'name="session" value="([0-9a-f]{16})"', row
            )
            for row in rows
            if 'name="session"' in row
        }
        assert set(sessions) == {(False, True), (True, False)}  # the laptop's is "this one"
        phone_handle = sessions[(True, False)]
        assert phone_handle
        csrf = hidden(page.text, "csrf")
        r = await laptop.post(
            "/account/sessions/revoke", data={"csrf": csrf, "session": phone_handle.group(1)}
        )
        assert r.status_code == 303 and r.headers["location"] == "/account/tokens"
        assert (await phone.get("/account")).status_code == 303  # signed out
        assert (await laptop.get("/account")).status_code == 200
        r = await laptop.post("/account/sessions/revoke", data={"csrf": csrf, "session": "0" * 16})
        assert r.status_code == 404


async def test_tokens_listed_and_revoked_through_the_token_service(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Engine, web_settings: Any
) -> None:
    """A PAT and a grant's access token are listed; revoking on the page makes the token fail
    verification; someone else's jti is 404 and stays valid."""
    import pytest

    from llmgw.errors import AuthError
    from llmgw.identity.tokens import TokenService

    ann = make_user("ann@example.com")
    bob = make_user("bob@example.com")
    tokens = TokenService.from_settings(web_settings, web_engine)
    pat, pat_secret = tokens.create_pat(ann.id, "ci", "chat", timedelta(days=365))
    grant = tokens.issue(
        client_id="llmgw-cli", user_id=ann.id, scope="chat keys:self", family_id=uuid.uuid4()
    )
    bob_pat, bob_secret = tokens.create_pat(bob.id, "bob-ci", "chat", timedelta(days=30))
    await sign_in(browser, "ann@example.com")
    page = await browser.get("/account/tokens")
    jtis = re.findall(r'name="jti" value="([0-9a-f]{32})"', page.text)
    assert pat.jti in jtis and len(jtis) == 2 and bob_pat.jti not in jtis
    assert "bob-ci" not in page.text and pat_secret not in page.text
    csrf = hidden(page.text, "csrf")
    r = await browser.post("/account/tokens/revoke", data={"csrf": csrf, "jti": bob_pat.jti})
    assert r.status_code == 404
    assert tokens.verify(bob_secret).user_id == bob.id
    r = await browser.post("/account/tokens/revoke", data={"csrf": csrf, "jti": pat.jti})
    assert r.status_code == 303
    with pytest.raises(AuthError):
        tokens.verify(pat_secret)
    assert tokens.verify(grant.access_token).user_id == ann.id
    other = [j for j in jtis if j != pat.jti][0]
    r = await browser.post("/account/tokens/revoke", data={"csrf": csrf, "jti": other})
    assert r.status_code == 303
    with pytest.raises(AuthError):
        tokens.verify(grant.access_token)
    page = await browser.get("/account/tokens")
    assert "No live tokens." in page.text
