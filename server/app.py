"""The app factory: ``create_app(settings)`` builds the Starlette app; its lifespan owns the services."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.config import Settings
from llmgw.server.errors import exception_handlers
from llmgw.server.middleware import RequestMiddleware
from llmgw.server.openapi import openapi_json
from llmgw.server.routes.chat import chat_routes
from llmgw.server.routes.embeddings import embedding_routes
from llmgw.server.routes.health import health_routes
from llmgw.server.routes.models import model_routes
from llmgw.server.routes.providers import provider_routes
from llmgw.server.state import Gateway

__all__ = ["create_app", "gateway_of"]


def create_app(settings: Settings) -> Starlette:
    """The gateway app for ``settings``.

    The lifespan opens the database engine, the key cache, the usage recorder and the upstream
    providers and keeps them on ``app.state.gateway``; on shutdown it writes pending
    ``last_used_at`` times, flushes usage and closes everything. ``app.state.drain`` is the
    shutdown state ``llmgw serve`` flips on SIGTERM.
    """
    gateway = Gateway(settings)
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

    routes = [
        *chat_routes(gateway),
        *embedding_routes(gateway),
        *model_routes(gateway),
        *provider_routes(gateway),
        *health_routes(gateway),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(
                RequestMiddleware,
                metrics=gateway.metrics,
                access_log_enabled=settings.server.access_log,
            )
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.drain = gateway.drain
    return app


def gateway_of(app: Starlette) -> Gateway:
    """The ``Gateway`` behind an app made by ``create_app``."""
    gateway: Gateway = app.state.gateway
    return gateway
