"""The app factory: ``create_app(settings)`` builds the Starlette app; its lifespan owns the services."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llmgw.config import Settings
from llmgw.server.errors import exception_handlers
from llmgw.server.middleware import RequestMiddleware
from llmgw.server.pipeline import (
    AdminRoute,
    KeyOperation,
    KeyRoute,
    UpstreamOperation,
    UpstreamRoute,
    routes_for,
)
from llmgw.server.routes.admin import admin_routes
from llmgw.server.routes.admin_oauth import admin_oauth_routes
from llmgw.server.routes.alerts import WebhookRoute, alert_routes
from llmgw.server.routes.chat import ChatCompletions
from llmgw.server.routes.conversations import ConversationChat, conversation_routes
from llmgw.server.routes.embeddings import Embeddings
from llmgw.server.routes.health import health_routes
from llmgw.server.routes.models import ListModels, ModelCatalogView, RetrieveModel
from llmgw.server.routes.oauth import oauth_routes
from llmgw.server.routes.providers import ProviderStatus
from llmgw.server.state import Gateway
from llmgw.server.web import web_routes

__all__ = ["GatewayApp", "create_app", "gateway_of"]


class GatewayApp(Starlette):
    """Starlette, plus the pipeline's routes dispatched straight to their ASGI apps.

    ``direct`` maps a path to ``{method: app}`` for the pipeline's operations (``routes_for``)
    and the alert webhook (``WebhookRoute``), each wrapped in the same user middleware Starlette
    wraps its router in, so middleware given to ``create_app`` or added with ``add_middleware``
    sees every route. A request for that exact method and path skips Starlette's router, its
    ``Request``/``Response`` objects and its error middlewares (the pipeline and the webhook
    answer their own errors with the envelope, and ``RequestMiddleware`` still counts, logs and
    catches the rest). Everything else (other methods on those paths,
    ``HEAD``, paths with parameters) takes Starlette's usual path to the same apps.
    """

    direct: dict[str, dict[str, ASGIApp]]

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack, and the direct routes wrapped in the same user middleware."""
        direct: dict[str, dict[str, ASGIApp]] = {}
        for route in self.router.routes:
            if isinstance(route, Route) and route.param_convertors == {} and route.methods:
                app = route.app
                if not isinstance(app, UpstreamRoute | KeyRoute | AdminRoute | WebhookRoute):
                    continue
                for cls, args, kwargs in reversed(self.user_middleware):
                    app = cls(app, *args, **kwargs)
                for method in route.methods - {"HEAD"}:
                    direct.setdefault(route.path, {})[method] = app
        self.direct = direct
        return super().build_middleware_stack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch the pipeline's routes directly; everything else through Starlette."""
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        if scope["type"] == "http":
            methods = self.direct.get(scope["path"])
            if methods is not None:
                app = methods.get(scope["method"])
                if app is not None:
                    scope["app"] = self
                    await app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> GatewayApp:
    """The gateway app for ``settings``.

    The lifespan opens the database engine, the key cache, the usage recorder and the upstream
    providers and keeps them on ``app.state.gateway``; on shutdown it writes pending
    ``last_used_at`` times, flushes usage and closes everything. ``app.state.drain`` is the
    shutdown state ``llmgw serve`` flips on SIGTERM. ``clock`` (monotonic seconds) times the key
    cache, breakers' cooldowns, the readiness cache and the other intervals; tests pass a fake one.
    """
    gateway = Gateway(settings, clock=clock)
    page_routes, pages = web_routes(gateway)
    doc: list[bytes] = []

    async def openapi(request: Request) -> Response:
        if not doc:  # built on the first request: most instances are never asked for it
            from llmgw.server.openapi import openapi_json

            doc.append(openapi_json())
        return Response(doc[0], media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await pages.aclose()
            await gateway.stop()

    operations: list[UpstreamOperation[Any, Any] | KeyOperation] = [
        ChatCompletions(),
        Embeddings(),
        ListModels(),
        RetrieveModel(),
        ModelCatalogView(),
        ProviderStatus(),
        ConversationChat(),
    ]
    routes = [
        *routes_for(gateway, operations),
        *health_routes(gateway),
        *admin_routes(gateway),
        *conversation_routes(gateway),
        *oauth_routes(gateway),
        *admin_oauth_routes(gateway),
        *alert_routes(gateway),
        *page_routes,
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    log_enabled = settings.server.access_log
    app = GatewayApp(
        routes=routes,
        middleware=[
            Middleware(
                RequestMiddleware,
                metrics=gateway.metrics,
                scrubber=gateway.scrubber,
                access_log_enabled=log_enabled,
            )
        ],
        exception_handlers=exception_handlers(gateway.scrubber),
        lifespan=lifespan,
    )
    # Starlette would answer "/v1/models/" with a 307 to an absolute URL built from the client's
    # Host header; a path that is not a route is a 404 here, whatever its slashes.
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    app.state.pages = pages
    app.state.drain = gateway.drain
    return app


def gateway_of(app: Starlette) -> Gateway:
    """The ``Gateway`` behind an app made by ``create_app``."""
    gateway: Gateway = app.state.gateway
    return gateway
