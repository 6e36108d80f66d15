"""The app factory: ``create_app(settings)`` builds the Starlette app; its lifespan owns the services."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llmgw.config import Settings
from llmgw.server.errors import exception_handlers
from llmgw.server.middleware import RequestMiddleware
from llmgw.server.openapi import openapi_json
from llmgw.server.routes.chat import CHAT_PATH, ChatEndpoint
from llmgw.server.routes.embeddings import embedding_routes
from llmgw.server.routes.health import health_routes
from llmgw.server.routes.models import model_routes
from llmgw.server.routes.providers import provider_routes
from llmgw.server.state import Gateway

__all__ = ["GatewayApp", "create_app", "gateway_of"]


class GatewayApp(Starlette):
    """Starlette, plus hot routes served as pure ASGI apps without its router and middleware.

    ``fast_post`` maps a path to an ASGI app already wrapped in ``RequestMiddleware``; a POST to
    that exact path goes there directly (the app answers its own errors with the envelope, and
    the middleware still counts, logs and catches the rest). Everything else, other methods on
    those paths included, takes Starlette's usual path.
    """

    fast_post: dict[str, ASGIApp]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch hot routes directly; everything else through Starlette."""
        if scope["type"] == "http" and scope["method"] == "POST":
            app = self.fast_post.get(scope["path"])
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
    doc = openapi_json()

    async def openapi(request: Request) -> Response:
        return Response(doc, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        # Move everything built so far (modules, settings, pools) out of the cyclic GC's reach:
        # full collections then scan only what requests allocate, which keeps their pauses short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await gateway.stop()

    chat = ChatEndpoint(gateway)
    routes = [
        Route(CHAT_PATH, chat, methods=["POST"]),  # reached for other methods only (405)
        *embedding_routes(gateway),
        *model_routes(gateway),
        *provider_routes(gateway),
        *health_routes(gateway),
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
    app.fast_post = {
        CHAT_PATH: RequestMiddleware(
            chat,
            metrics=gateway.metrics,
            scrubber=gateway.scrubber,
            access_log_enabled=log_enabled,
        )
    }
    app.state.gateway = gateway
    app.state.drain = gateway.drain
    return app


def gateway_of(app: Starlette) -> Gateway:
    """The ``Gateway`` behind an app made by ``create_app``."""
    gateway: Gateway = app.state.gateway
    return gateway
