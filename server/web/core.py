"""What every page shares: the Jinja2 environment, security headers, the session cookie, CSRF
checks, form parsing and the client address.

Headers on every page: ``Content-Security-Policy`` with ``frame-ancestors 'none'`` (plus
``X-Frame-Options: DENY`` for older browsers: RFC 9700 §4.16), no script source at all (the pages
use no JavaScript; the alert dashboard alone allows its own ``/static/alerts.js``, never inline
script), ``form-action`` limited to this origin (the consent form also names the one
validated redirect origin, because browsers apply ``form-action`` to the redirect after a POST),
``Referrer-Policy: same-origin`` (a code in a URL never leaks through ``Referer`` to another
site, while same-origin form posts keep a real ``Origin`` header: with ``no-referrer`` browsers
send ``Origin: null``), and
``Cache-Control: no-store``.

CSRF: a signed-in form carries the session's ``csrf_secret``; the login form (no session yet)
uses a double-submit cookie. Every POST must also come from this origin when the browser says
where it comes from (``Origin``).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from llmgw.admin.ops import Actor
from llmgw.identity.sessions import SESSION_LIFETIME, SessionInfo, SessionService
from llmgw.identity.throttle import LoginThrottle, MemoryStore, RedisStore, Throttle, ThrottleStore
from llmgw.server.web.counters import WebCounters
from llmgw.server.web.flash import Flash

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.server.state import Gateway

__all__ = ["FORM_LIMIT", "SESSION_COOKIE", "Form", "Web", "client_ip", "posted", "signed_in"]

T = TypeVar("T")

SESSION_COOKIE = "llmgw_session"
LOGIN_CSRF_COOKIE = "llmgw_login_csrf"
FORM_LIMIT = 16 * 1024
"""Largest form body a page accepts (the biggest, consent, is well under 4 KiB)."""

_TEMPLATES = Path(__file__).with_name("templates")
_CSS = Path(__file__).with_name("static") / "llmgw.css"


class Form(dict[str, str]):
    """A parsed ``application/x-www-form-urlencoded`` body (one value per name; a repeated
    name is refused)."""


class BadForm(Exception):
    """The body is not a form this page accepts."""


def client_ip(request: Request) -> str:
    """The peer address (``X-Forwarded-For`` is not trusted: it is the caller's to write)."""
    return request.client.host if request.client else "unknown"


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


class Web:
    """The pages' shared services, built on first use from the running ``Gateway``."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        clock: Callable[[], float] | None = None,
        counters: WebCounters | None = None,
    ) -> None:
        self.gateway = gateway
        self._clock = clock or gateway.clock
        self.env = Environment(
            loader=FileSystemLoader(_TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.css = _CSS.read_bytes()
        counters = counters or WebCounters(gateway.metrics.registry)
        self.logins_total = counters.logins_total
        self.device_total = counters.device_total
        self.consents_total = counters.consents_total
        self._store: ThrottleStore | None = None
        self._sessions: SessionService | None = None
        self._flash: Flash | None = None
        self.memo: dict[Any, tuple[float, Any]] = {}
        """Short-lived results a page may share between requests (the alert dashboard's counts:
        ``(expires, value)`` by key)."""

    # -- services ---------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The gateway's database engine."""
        return self.gateway.engine

    @property
    def flash(self) -> Flash:
        """One-time values from a POST to the page it redirects to (``server/web/flash.py``)."""
        if self._flash is None:
            from llmgw.identity.signing import load_secret

            s = self.gateway.settings
            configured = s.identity.signing_secret
            self._flash = Flash(
                load_secret(configured.get_secret_value() if configured else None, s.home)
            )
        return self._flash

    @property
    def sessions(self) -> SessionService:
        """Browser sessions on the gateway's database."""
        if self._sessions is None:
            self._sessions = SessionService(self.engine)
        return self._sessions

    @property
    def store(self) -> ThrottleStore:
        """Throttle counters: Redis when ``redis_url`` is set (shared by every instance), else
        this process's memory."""
        if self._store is None:
            url = self.gateway.settings.redis_url
            if url is not None:
                self._store = RedisStore(url.get_secret_value())
            else:
                self._store = MemoryStore(clock=self._clock)
        return self._store

    @property
    def logins(self) -> LoginThrottle:
        """The login page's throttle."""
        return LoginThrottle(self.store)

    @property
    def throttle(self) -> Throttle:
        """Plain counters on the same store (the device page's wrong codes)."""
        return Throttle(self.store)

    async def aclose(self) -> None:
        """Release the throttle store's connections."""
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking database call in a worker thread."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def remembered(self, key: Any, ttl: float, fn: Callable[[], T]) -> T:
        """``fn()``, or its value from the last ``ttl`` seconds under ``key`` (blocking: call it
        in a worker thread). At most 64 keys are kept."""
        now = self._clock()
        hit = self.memo.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        fresh = fn()
        if len(self.memo) >= 64:
            self.memo = {k: v for k, v in self.memo.items() if v[0] > now}
            if len(self.memo) >= 64:
                self.memo.clear()
        self.memo[key] = (now + ttl, fresh)
        return fresh

    def actor(self, session: SessionInfo, request: Request | None = None) -> Actor:
        """The signed-in user as the audit log's actor."""
        client = request.client.host if request is not None and request.client else None
        return Actor(name=session.email, kind="session", role=session.role, remote_addr=client)

    async def audit(
        self, session: SessionInfo, action: str, target: str | None, **detail: Any
    ) -> None:
        """One audit row for a change made on the pages (never a secret in ``detail``)."""
        from llmgw.admin.audit import AuditService

        await self.db(
            AuditService(self.engine).record,
            self.actor(session),
            action,
            target,
            source="web",
            detail=detail or None,
        )

    # -- responses --------------------------------------------------------------------------
    def page(
        self,
        template: str,
        *,
        status: int = 200,
        form_action: str | None = None,
        headers: Mapping[str, str] | None = None,
        script: bool = False,
        **context: Any,
    ) -> HTMLResponse:
        """Render ``template`` with the security headers (``script``: see ``secure_headers``)."""
        html = self.env.get_template(template).render(**context)
        response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
        secure_headers(response, form_action=form_action, script=script)
        return response

    def error(
        self, title: str, message: str, *, status: int = 400, session: SessionInfo | None = None
    ) -> HTMLResponse:
        """An error page (never a redirect)."""
        return self.page("error.html", status=status, title=title, message=message, me=session)

    # -- sessions ---------------------------------------------------------------------------
    async def session(self, request: Request) -> SessionInfo | None:
        """The signed-in user's session, or ``None``."""
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await self.db(self.sessions.get, token)

    def set_session_cookie(self, response: Response, request: Request, token: str) -> None:
        """Attach the session cookie: HttpOnly, SameSite=Lax, Secure on https, whole site."""
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
        )

    def clear_session_cookie(self, response: Response, request: Request) -> None:
        """Remove the session cookie."""
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
        )

    # -- CSRF -------------------------------------------------------------------------------
    @staticmethod
    def login_csrf(request: Request) -> str:
        """The double-submit value for the login form (the cookie's, or a new one)."""
        value = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if len(value) < 32 or len(value) > 64:
            value = secrets.token_urlsafe(32)
        return value

    def set_login_csrf(self, response: Response, request: Request, value: str) -> None:
        """Attach the login form's double-submit cookie."""
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            value,
            max_age=3600,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure(request),
        )

    def public_origin(self) -> str | None:
        """``scheme://host[:port]`` of ``identity.issuer`` (the public URL), when it is set."""
        issuer = self.gateway.settings.identity.issuer
        if not issuer:
            return None
        parts = urlsplit(issuer)
        return f"{parts.scheme}://{parts.netloc}"

    def secure(self, request: Request) -> bool:
        """Whether cookies get ``Secure``: the request came over https, or the public URL
        (``identity.issuer``) is https, as behind a proxy that terminates TLS and talks plain
        http to llmgw (``X-Forwarded-Proto`` is not trusted: anyone can send it)."""
        public = self.public_origin()
        return request.url.scheme == "https" or (public or "").startswith("https://")

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the POST comes from another origin than this server as
        the request reached it or as its public URL (``identity.issuer``) names it."""
        origin = request.headers.get("origin")
        return origin is None or origin in (_origin(request), self.public_origin())

    @staticmethod
    def csrf_ok(expected: str | None, given: str | None) -> bool:
        """Constant-time comparison of a CSRF token."""
        if not expected or not given:
            return False
        return hmac.compare_digest(expected.encode(), given.encode())

    async def form(self, request: Request) -> Form:
        """The POSTed form; ``BadForm`` when it is not url-encoded, too big or repeats a name."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise BadForm("not a form")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                raise BadForm("too big")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise BadForm("not a form") from None
        form = Form()
        for name, value in pairs:
            if name in form:
                raise BadForm(f"{name} given twice")
            form[name] = value
        return form


async def signed_in(web: Web, request: Request) -> SessionInfo | Response:
    """The session, or a redirect to the sign-in page that comes back here."""
    session = await web.session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return see_other("/login?next=" + quote(target, safe=""))
    return session


async def posted(web: Web, request: Request) -> tuple[SessionInfo, Form] | Response:
    """A signed-in form post with a valid CSRF token from this origin, or the error page."""
    try:
        form = await web.form(request)
    except BadForm:
        return web.error("Bad request", "The form could not be read.")
    session = await web.session(request)
    if session is None:
        return see_other("/login?next=" + quote(request.url.path, safe=""))
    if not web.same_origin(request) or not web.csrf_ok(session.csrf_secret, form.get("csrf")):
        return web.error(
            "Forbidden", "This form has expired; reload the page.", status=403, session=session
        )
    return session, form


def secure_headers(
    response: Response, *, form_action: str | None = None, script: bool = False
) -> None:
    """The pages' security headers (see the module docstring); ``script`` allows this origin's
    own script files and same-origin fetches (the alert dashboard's live refresh), never inline
    script."""
    actions = "'self'" + (f" {form_action}" if form_action else "")
    scripts = "script-src 'self'; connect-src 'self'; " if script else ""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; {scripts}style-src 'self'; img-src 'self'; base-uri 'none'; "
        f"form-action {actions}; frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"


def see_other(url: str) -> RedirectResponse:
    """A 303 redirect (never 307 after a POST carrying credentials: RFC 9700 §4.12)."""
    response = RedirectResponse(url, status_code=303)
    secure_headers(response)
    return response
