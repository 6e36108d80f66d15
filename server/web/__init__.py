"""The server-rendered pages: sign-in, OAuth consent, device verification, self-service and
the alert dashboard.

Jinja2 templates in ``templates/``, one stylesheet in ``static/``, no JavaScript but the alert
list's live refresh (``static/alerts.js``). Every page
sends the headers of ``core.secure_headers`` (``frame-ancestors 'none'``, ``X-Frame-Options:
DENY``, no-store); every form carries a CSRF token. ``web_routes`` lists the routes; the app's
lifespan closes ``Web`` (its throttle store) on shutdown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.server.web.core import Web

if TYPE_CHECKING:
    from llmgw.server.state import Gateway

__all__ = ["ALERT_PAGES", "Web", "web_routes"]

Handler = Callable[[Web, Request], Awaitable[Response]]


def _bind(web: Web, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(web, request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


ALERT_PAGES = (
    ("/alerts", "GET", "alerts_get"),
    ("/alerts/{id}", "GET", "alert_get"),
    ("/alerts/{id}/ack", "POST", "alert_ack"),
    ("/alerts/{id}/note", "POST", "alert_note"),
    ("/alerts/{id}/reclassify", "POST", "alert_reclassify"),
    ("/static/alerts.js", "GET", "alerts_js"),
)
"""The alert dashboard's routes: (path, method, handler in ``web/alerts.py``)."""


def _lazy(name: str) -> Handler:
    """A handler of ``web/alerts.py``, imported on its first request (``llmgw serve`` does not
    load the dashboard, its charts or the classifier's types for users who never open it)."""

    async def handler(web: Web, request: Request) -> Response:
        from llmgw.server.web import alerts

        page: Handler = getattr(alerts, name)
        return await page(web, request)

    handler.__name__ = name
    return handler


def web_routes(gateway: Gateway) -> tuple[list[Route], Web]:
    """The pages' routes on ``gateway``, and the ``Web`` they share."""
    from llmgw.server.web.account import ACCOUNT_ROUTES
    from llmgw.server.web.authorize import authorize_get, authorize_post
    from llmgw.server.web.device import device_get, device_post
    from llmgw.server.web.login import login_get, login_post, logout_post

    web = Web(gateway)

    async def css(request: Request) -> Response:
        return Response(
            web.css,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    table: list[tuple[str, str, Handler]] = [
        ("/login", "GET", login_get),
        ("/login", "POST", login_post),
        ("/logout", "POST", logout_post),
        ("/oauth/authorize", "GET", authorize_get),
        ("/oauth/authorize", "POST", authorize_post),
        ("/device", "GET", device_get),
        ("/device", "POST", device_post),
        *ACCOUNT_ROUTES,
        *((path, method, _lazy(name)) for path, method, name in ALERT_PAGES),
    ]
    routes = [Route(path, _bind(web, h), methods=[m]) for path, m, h in table]
    routes.append(Route("/static/llmgw.css", css, methods=["GET"]))
    return routes, web
