"""Operations: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import hmac

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.errors import AuthError
from llmgw.server.metrics import CONTENT_TYPE_LATEST
from llmgw.server.state import Gateway

__all__ = ["health_routes"]

_OK = orjson.dumps({"status": "ok"})


def health_routes(g: Gateway) -> list[Route]:
    """The operations routes bound to gateway ``g``."""

    async def healthz(request: Request) -> Response:
        return Response(_OK, media_type="application/json")

    async def readyz(request: Request) -> Response:
        problems: list[str] = []
        if g.drain.draining:
            problems.append("draining: the server is shutting down")
        elif not g.started:
            problems.append("starting")
        else:
            problems.extend(await g.ready.problems())
            why = g.recorder.unrecordable
            if why is not None:
                problems.append(f"usage cannot be recorded: {why}")
            alerts = getattr(g, "alerts", None)
            if alerts is not None:
                problems.extend(alerts.problems())
        if problems:
            body = {"status": "unavailable", "problems": problems}
            return Response(orjson.dumps(body), status_code=503, media_type="application/json")
        return Response(orjson.dumps({"status": "ready"}), media_type="application/json")

    token = g.settings.server.metrics_token
    expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    async def metrics(request: Request) -> Response:
        if expected is not None:
            given = next((v for k, v in request.scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, expected):
                raise AuthError(
                    "GET /metrics needs the metrics token", code="invalid_metrics_token"
                )
        return Response(g.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
