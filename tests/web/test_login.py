"""Sign-in: one answer for every wrong case (no user enumeration), throttling per account and
address that cannot lock the owner out, CSRF on the form, sessions ended on sign-out."""

from __future__ import annotations

from typing import Any, Literal

import httpx
import pytest

from tests.web.conftest import BASE, PASSWORD, hidden, sign_in


async def test_user_enumeration_same_answer_for_unknown_email_no_password_disabled_wrong_password(
    browser: httpx.AsyncClient, make_user: Any, web_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User enumeration: unknown email, user without a password, disabled user, wrong password
    and a malformed address get the same status and page, and each costs exactly one real
    argon2 verification (the hasher is the real one, wrapped to count its calls), so the
    answer's timing does not depend on whether the account exists."""
    from argon2 import PasswordHasher

    from llmgw.auth.users import UserService
    from llmgw.identity import passwords

    class Counting(PasswordHasher):
        calls = 0

        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            Counting.calls += 1
            return super().verify(hash, password)

    make_user("ann@example.com")
    make_user("nopw@example.com", password=None)
    make_user("off@example.com")
    UserService(web_engine).disable("off@example.com")
    monkeypatch.setattr(passwords, "_HASHER", Counting())
    bodies = set()
    for email, password in (
        ("ghost@example.com", PASSWORD),
        ("nopw@example.com", PASSWORD),
        ("off@example.com", PASSWORD),
        ("ann@example.com", "wrong password!"),
        ("not-an-email", PASSWORD),
    ):
        before = Counting.calls
        r = await sign_in(browser, email, password)
        assert Counting.calls - before == 1, email
        assert r.status_code == 401
        assert "llmgw_session" not in r.headers.get("set-cookie", "")
        # The page differs only in the echoed email and the fresh CSRF token.
        text = r.text.replace(email, "EMAIL").replace(hidden(r.text, "csrf"), "CSRF")
        bodies.add(text)
    assert len(bodies) == 1
    assert "Wrong email or password." in bodies.pop()


async def test_login_throttling_locks_the_guessing_address_not_the_owner(
    web_app: Any, make_user: Any, fake_monotonic: list[float]
) -> None:
    """Login throttling: after 5 misses from one address each further miss locks that
    (account, address) pair with doubling waits (429 + Retry-After, the right password refused
    too while locked); the owner from another address still signs in; the lock ends."""
    make_user("ann@example.com")

    def client(ip: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web_app, client=(ip, 40000)), base_url=BASE
        )

    async with client("198.51.100.66") as attacker, client("192.0.2.10") as owner:
        statuses = [
            (await sign_in(attacker, "ann@example.com", f"guess-{i}xxxx")).status_code
            for i in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        locked = await sign_in(attacker, "ann@example.com", PASSWORD)
        assert locked.status_code == 429 and locked.headers["retry-after"] == "2"
        assert "Too many failed attempts" in locked.text
        # The owner, elsewhere, is not locked out by the attacker's misses.
        assert (await sign_in(owner, "ann@example.com")).status_code == 303
        # The lock runs out (2 s) and doubles on the next miss (4 s), capped later.
        fake_monotonic[0] += 2.5
        r = await sign_in(attacker, "ann@example.com", "still wrong!!")
        assert r.status_code == 429 and r.headers["retry-after"] == "4"
        fake_monotonic[0] += 4.5
        assert (await sign_in(attacker, "ann@example.com")).status_code == 303


async def test_account_wide_throttle_spares_an_address_that_signed_in_before(
    web_app: Any, make_user: Any, fake_monotonic: list[float]
) -> None:
    """Many addresses guessing one account lock it for strangers for at most 30 s; the owner's
    known address is exempt."""
    from llmgw.identity.throttle import LOGIN_POLICIES

    make_user("ann@example.com")

    def client(ip: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web_app, client=(ip, 40000)), base_url=BASE
        )

    async with client("192.0.2.10") as owner:
        assert (await sign_in(owner, "ann@example.com")).status_code == 303
    web = web_app.state.pages.web
    free = LOGIN_POLICIES["account"].free
    for i in range(free + 3):  # spread over addresses: no pair or address lock
        await web.logins.failure("ann@example.com", f"10.0.{i // 200}.{i % 200}")
    async with client("203.0.113.99") as stranger, client("192.0.2.10") as owner:
        r = await sign_in(stranger, "ann@example.com")
        assert r.status_code == 429 and int(r.headers["retry-after"]) <= 30
        assert (await sign_in(owner, "ann@example.com")).status_code == 303


async def test_csrf_login_form_needs_its_double_submit_token(
    browser: httpx.AsyncClient, make_user: Any
) -> None:
    """CSRF: a sign-in POST without the form's token, with another token, or from another
    origin starts no session (login CSRF)."""
    make_user("ann@example.com")
    page = await browser.get("/login")
    token = hidden(page.text, "csrf")
    for data, headers in (
        ({"email": "ann@example.com", "password": PASSWORD}, {}),
        ({"email": "ann@example.com", "password": PASSWORD, "csrf": "y" * 43}, {}),
        (
            {"email": "ann@example.com", "password": PASSWORD, "csrf": token},
            {"Origin": "https://evil.example"},
        ),
    ):
        r = await browser.post("/login", data=data, headers=headers)
        assert r.status_code == 403
        assert "llmgw_session" not in r.headers.get("set-cookie", "")


async def test_session_cookie_flags_and_sign_out(
    browser: httpx.AsyncClient, make_user: Any
) -> None:
    make_user("ann@example.com")
    r = await sign_in(browser, "ann@example.com")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    page = await browser.get("/account")
    assert page.status_code == 200
    r = await browser.post("/logout", data={"csrf": hidden(page.text, "csrf")})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = await browser.get("/account")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/metrics",
        "javascript:alert(1)",
    ],
)
async def test_next_never_leaves_the_pages(
    browser: httpx.AsyncClient, make_user: Any, target: str
) -> None:
    """No open redirect through ``next``: anything but a page path becomes /account."""
    make_user("ann@example.com")
    r = await sign_in(browser, "ann@example.com", next_url=target)
    assert r.status_code == 303 and r.headers["location"] == "/account"


async def test_a_new_sign_in_ends_the_previous_session(
    browser: httpx.AsyncClient, make_user: Any
) -> None:
    """Signing in again (the form posted while a session cookie is present) gives a new session
    id and ends the old one (no session fixation)."""
    make_user("ann@example.com")
    await sign_in(browser, "ann@example.com")
    old = browser.cookies["llmgw_session"]
    r = await browser.post("/logout", data={"x": "1"})  # no CSRF: refused, still signed in
    assert r.status_code == 403
    assert (await browser.get("/account")).status_code == 200
    csrf = browser.cookies["llmgw_login_csrf"]
    r = await browser.post(
        "/login", data={"csrf": csrf, "email": "ann@example.com", "password": PASSWORD}
    )
    assert r.status_code == 303
    new = browser.cookies["llmgw_session"]
    assert new != old
    async with httpx.AsyncClient(transport=browser._transport, base_url=BASE) as other:
        other.cookies.set("llmgw_session", old)
        assert (await other.get("/account")).status_code == 303
        other.cookies.set("llmgw_session", new)
        assert (await other.get("/account")).status_code == 200


async def test_behind_a_tls_proxy_cookies_are_secure_and_the_public_origin_is_accepted(
    home: Any, db_file: str, web_engine: Any, make_user: Any
) -> None:
    """A proxy terminates TLS and forwards plain http: with ``identity.issuer`` = the public
    https URL, the session and form cookies get ``Secure`` and a form posted from that origin
    is accepted; another origin is still refused (X-Forwarded-Proto changes nothing)."""
    from llmgw.config import Settings
    from llmgw.server import create_app
    from tests.web.conftest import hidden

    settings = Settings(
        home=home, database={"url": db_file}, identity={"issuer": "https://llm.example.com"}
    )
    make_user("ann@example.com")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://llm.example.com") as c:
            page = await c.get("/login")
            assert "secure" in page.headers["set-cookie"].lower()
            form = {"csrf": hidden(page.text, "csrf"), "next": "/account",
                    "email": "ann@example.com", "password": PASSWORD}  # fmt: skip
            # the browser speaks https to the proxy, so it sends the Secure cookie back; httpx,
            # seeing http, would not: send it by hand
            jar = {"Cookie": page.headers["set-cookie"].split(";")[0]}
            evil = await c.post(
                "/login", data=form, headers={**jar, "Origin": "https://evil.example"}
            )
            assert evil.status_code == 403
            r = await c.post(
                "/login", data=form, headers={**jar, "Origin": "https://llm.example.com"}
            )
            assert r.status_code == 303, r.text
            cookie = next(v for v in r.headers.get_list("set-cookie") if "llmgw_session" in v)
            assert "secure" in cookie.lower() and "httponly" in cookie.lower()

    plain = Settings(home=home, database={"url": db_file})  # no public https URL: no Secure
    app = create_app(plain)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
            page = await c.get("/login", headers={"X-Forwarded-Proto": "https"})
            assert "secure" not in page.headers["set-cookie"].lower()
