"""``/login`` and ``/logout``: email + password, throttled, answered the same way for unknown
emails (one argon2 verification on every path), a fresh session id on every login."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from llmgw.identity.passwords import authenticate
from llmgw.server.web.core import BadForm, Web, client_ip, see_other

__all__ = ["login_page", "safe_next"]

_NEXT_PATHS = ("/oauth/authorize", "/device", "/account", "/alerts")
WRONG = "Wrong email or password."
"""The one answer for an unknown email, a user without a password, a disabled user or a wrong
password (no user enumeration)."""


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site under the pages, else ``/account``
    (never another origin: no open redirect through ``next``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/account"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(_NEXT_PATHS):
        return "/account"
    return target


def login_page(
    web: Web,
    request: Request,
    *,
    next_url: str,
    error: str | None = None,
    email: str = "",
    status: int = 200,
    client: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in form (with a fresh double-submit CSRF cookie)."""
    csrf = web.login_csrf(request)
    response = web.page(
        "login.html",
        status=status,
        csrf=csrf,
        next=safe_next(next_url),
        error=error,
        email=email,
        client=client,
        me=None,
        headers=headers,
    )
    web.set_login_csrf(response, request, csrf)
    return response


async def login_get(web: Web, request: Request) -> Response:
    """GET /login: the form, or straight on when already signed in."""
    next_url = safe_next(request.query_params.get("next"))
    if await web.session(request) is not None:
        return see_other(next_url)
    return login_page(web, request, next_url=next_url)


async def login_post(web: Web, request: Request) -> Response:
    """POST /login: check CSRF and the throttle, verify the password, start a session."""
    try:
        form = await web.form(request)
    except BadForm:
        return web.error("Bad request", "The form could not be read.", status=400)
    next_url = safe_next(form.get("next"))
    email = form.get("email", "")[:320]
    if not web.same_origin(request) or not web.csrf_ok(
        request.cookies.get("llmgw_login_csrf"), form.get("csrf")
    ):
        return login_page(
            web,
            request,
            next_url=next_url,
            email=email,
            status=403,
            error="This form has expired. Please sign in again.",
        )
    ip = client_ip(request)
    wait = await web.logins.wait(email, ip)
    if wait > 0:
        web.logins_total.labels("throttled").inc()
        return _too_many(web, request, next_url, email, wait)
    user = await web.db(authenticate, web.engine, email, form.get("password", ""))
    if user is None:
        web.logins_total.labels("failure").inc()
        lock = await web.logins.failure(email, ip)
        if lock > 0:
            return _too_many(web, request, next_url, email, lock)
        return login_page(web, request, next_url=next_url, email=email, status=401, error=WRONG)
    web.logins_total.labels("success").inc()
    await web.logins.success(email, ip)
    old = request.cookies.get("llmgw_session")
    if old:
        await web.db(web.sessions.revoke, old)
    token, _ = await web.db(
        web.sessions.create, user.id, ip=ip, user_agent=request.headers.get("user-agent")
    )
    response = see_other(next_url)
    web.set_session_cookie(response, request, token)
    return response


def _too_many(web: Web, request: Request, next_url: str, email: str, wait: float) -> Response:
    seconds = max(1, round(wait))
    return login_page(
        web,
        request,
        next_url=next_url,
        email=email,
        status=429,
        error=f"Too many failed attempts. Try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )


async def logout_post(web: Web, request: Request) -> Response:
    """POST /logout: end the session (CSRF-checked) and go to the sign-in page."""
    session = await web.session(request)
    try:
        form = await web.form(request)
    except BadForm:
        return web.error("Bad request", "The form could not be read.", status=400)
    if session is None:
        return see_other("/login")
    if not web.same_origin(request) or not web.csrf_ok(session.csrf_secret, form.get("csrf")):
        return web.error("Forbidden", "This form has expired; reload the page.", status=403)
    await web.db(web.sessions.revoke, request.cookies.get("llmgw_session", ""))
    response = see_other("/login")
    web.clear_session_cookie(response, request)
    return response
