"""The server-rendered pages: sign-in, OAuth consent, device verification, self-service and
the alert dashboard.

Jinja2 templates in ``templates/``, one stylesheet in ``static/``, no JavaScript but the alert
list's live refresh (``static/alerts.js``). Every page
sends the headers of ``core.secure_headers`` (``frame-ancestors 'none'``, ``X-Frame-Options:
DENY``, no-store); every form carries a CSRF token. ``web_routes`` lists the routes; each page's module, and the
``Web`` they share, load on its first request (``Pages``); the app's lifespan closes ``Pages``
(the throttle store) on shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.web.counters import WebCounters

if TYPE_CHECKING:
    from llmgw.server.state import Gateway
    from llmgw.server.web.core import Web

__all__ = ["ALERT_PAGES", "PAGES", "Pages", "web_routes"]

Handler = Callable[["Web", Request], Awaitable[Response]]


class Pages:
    """The pages' shared ``Web``, built on the first page request.

    ``llmgw serve`` does not import Jinja2, argon2, the sessions, the throttle store or any page
    module until someone opens a page: most instances serve only the API. The pages' metrics are
    registered here, at start, so ``/metrics`` lists them before the first page is opened.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.counters = WebCounters(gateway.metrics.registry)
        self._web: Web | None = None

    @property
    def web(self) -> Web:
        """The pages' ``Web`` (made on first use)."""
        if self._web is None:
            from llmgw.server.web.core import Web

            self._web = Web(self.gateway, counters=self.counters)
        return self._web

    async def aclose(self) -> None:
        """Release the throttle store's connections, if a page ever opened it."""
        if self._web is not None:
            await self._web.aclose()


PAGES = (
    ("/login", "GET", "login", "login_get"),
    ("/login", "POST", "login", "login_post"),
    ("/logout", "POST", "login", "logout_post"),
    ("/oauth/authorize", "GET", "authorize", "authorize_get"),
    ("/oauth/authorize", "POST", "authorize", "authorize_post"),
    ("/device", "GET", "device", "device_get"),
    ("/device", "POST", "device", "device_post"),
    ("/account", "GET", "account", "profile_get"),
    ("/account/keys", "GET", "account", "keys_get"),
    ("/account/keys", "POST", "account", "keys_post"),
    ("/account/keys/revoke", "POST", "account", "keys_revoke"),
    ("/account/usage", "GET", "account", "usage_get"),
    ("/account/tokens", "GET", "account", "tokens_get"),
    ("/account/tokens/revoke", "POST", "account", "tokens_revoke"),
    ("/account/sessions/revoke", "POST", "account", "sessions_revoke"),
)
"""The sign-in, consent, device and account pages: (path, method, module in ``server/web/``,
handler); ``account.ACCOUNT_ROUTES`` must list the same account pages (a test checks it)."""

ALERT_PAGES = (
    ("/alerts", "GET", "alerts_get"),
    ("/alerts/{id}", "GET", "alert_get"),
    ("/alerts/{id}/ack", "POST", "alert_ack"),
    ("/alerts/{id}/note", "POST", "alert_note"),
    ("/alerts/{id}/reclassify", "POST", "alert_reclassify"),
    ("/static/alerts.js", "GET", "alerts_js"),
)
"""The alert dashboard's routes: (path, method, handler in ``web/alerts.py``)."""


def _lazy(pages: Pages, module: str, name: str) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of handler ``name`` in ``server/web/<module>.py``, imported (with the
    ``Web`` it needs) on its first request."""
    found: list[Handler] = []

    async def endpoint(request: Request) -> Response:
        if not found:
            found.append(getattr(import_module(f"llmgw.server.web.{module}"), name))
        return await found[0](pages.web, request)

    endpoint.__name__ = name
    return endpoint


def web_routes(gateway: Gateway) -> tuple[list[Route], Pages]:
    """The pages' routes on ``gateway``, and the ``Pages`` they share."""
    pages = Pages(gateway)

    async def css(request: Request) -> Response:
        return Response(
            pages.web.css,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    table = [*PAGES, *((path, method, "alerts", name) for path, method, name in ALERT_PAGES)]
    routes = [Route(path, _lazy(pages, mod, name), methods=[m]) for path, m, mod, name in table]
    routes.append(Route("/static/llmgw.css", css, methods=["GET"]))
    return routes, pages
