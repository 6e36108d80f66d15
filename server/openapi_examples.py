"""Examples for the OpenAPI document: a request and answers for every operation, an envelope per error.

``annotate(document)`` adds them to whatever operations ``openapi_document`` holds, keyed by
``operationId``, so a route added there gets its summary and examples from here (and
``tests/test_api_docs.py`` fails until it has them). The bodies are what llmgw answers in front of
``llmgw emulate openai`` with a provider named ``local``; the same test sends each request example
to a real gateway and checks the answer has the documented shape.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CATALOG", "ERRORS", "OPERATIONS", "annotate"]

_CHAT = {
    "id": "chatcmpl-emu000000000001",
    "object": "chat.completion",
    "created": 1796280413,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Echo: Hello, llmgw",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    "system_fingerprint": "fp_llmgw_emulator",
}

_CHUNK = (
    '{"id":"chatcmpl-emu000000000002","object":"chat.completion.chunk","created":1796280413,'
    '"model":"gpt-4o-mini","choices":[{"index":0,"delta":%s,"logprobs":null,'
    '"finish_reason":%s}]}'
)
_STREAM = (
    "".join(
        f"data: {_CHUNK % (delta, finish)}\n\n"
        for delta, finish in (
            ('{"role":"assistant","content":""}', "null"),
            ('{"content":"Echo: Hi"}', "null"),
            ("{}", '"stop"'),
        )
    )
    + "data: [DONE]\n\n"
)

_MODEL = {"id": "local/gpt-4o-mini", "object": "model", "created": 0, "owned_by": "local"}

CATALOG = {
    "object": "list",
    "data": [
        {
            "id": "local/gpt-4o-mini",
            "object": "model",
            "created": 0,
            "provider": "local",
            "model": "gpt-4o-mini",
            "owned_by": "local",
            "type": "chat",
            "alias": False,
            "targets": [],
            "configured": True,
            "listed": True,
            "missing": False,
            "context_window": 128000,
            "capabilities": {
                "chat": True,
                "streaming": True,
                "tools": True,
                "embeddings": False,
                "vision": True,
            },
            "price": None,
            "versions": None,
        }
    ],
    "providers": [
        {
            "provider": "local",
            "kind": "openai",
            "source": "upstream",
            "refreshed_at": "2026-12-03T12:00:00.123456+00:00",
            "age_seconds": 12.5,
            "stale": False,
            "error": None,
            "models": 1,
            "missing": [],
        }
    ],
    "ttl_seconds": 300.0,
}
"""A model catalog as ``GET /api/models`` answers it (``ModelCatalog.describe``)."""

OPERATIONS: dict[str, dict[str, Any]] = {
    "createChatCompletion": {
        "summary": "Create a chat completion",
        "description": "OpenAI's chat completions: `model` is `provider/model[:version]` or an "
        "alias; with `stream: true` the answer is a server-sent event stream ending in "
        "`data: [DONE]`. The serving candidate is named in `x-llmgw-served-by`.",
        "tag": "OpenAI-compatible",
        "request": {
            "model": "local/gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello, llmgw"}],
        },
        "responses": {"200": {"application/json": _CHAT, "text/event-stream": _STREAM}},
    },
    "createEmbedding": {
        "summary": "Create embeddings",
        "description": "OpenAI's embeddings for a string or a list of up to 2,048 inputs.",
        "tag": "OpenAI-compatible",
        "request": {"model": "local/text-embedding-3-small", "input": "Hello", "dimensions": 4},
        "responses": {
            "200": {
                "application/json": {
                    "object": "list",
                    "data": [
                        {
                            "object": "embedding",
                            "index": 0,
                            "embedding": [0.7610, -0.4742, -0.0432, 0.4406],
                        }
                    ],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            }
        },
    },
    "listModels": {
        "summary": "List models",
        "description": "Every `provider/model` id and alias the key may use, from the gateway's "
        "cached catalog (never waits on an upstream).",
        "tag": "OpenAI-compatible",
        "responses": {
            "200": {
                "application/json": {
                    "object": "list",
                    "data": [
                        _MODEL,
                        {
                            "id": "chat-default",
                            "object": "model",
                            "created": 0,
                            "owned_by": "llmgw",
                        },
                    ],
                }
            }
        },
    },
    "retrieveModel": {
        "summary": "Retrieve a model",
        "description": "One entry of `GET /v1/models` by its id (a `provider/model` or an alias).",
        "tag": "OpenAI-compatible",
        "parameters": {"model": "local/gpt-4o-mini"},
        "responses": {"200": {"application/json": _MODEL}},
    },
    "modelCatalog": {
        "summary": "Model catalog",
        "description": "What each provider really offers, from the gateway's cache (refreshed in "
        "the background every `routing.models_refresh_interval` seconds, `ttl_seconds`): per "
        "model its type, context window, capabilities (`null`: not known), price per 1M tokens, "
        "versions, and whether the upstream lists it (`listed`; `null` where the provider has no "
        "listing, as YandexGPT's native API); `missing` flags a configured model the upstream "
        "no longer lists. Per provider: where its list comes from, when it was listed, and "
        "`stale` with the `error` when the last refresh failed. Only the models of the key's "
        "allow-list, and their providers.",
        "tag": "Operations",
        "responses": {"200": {"application/json": CATALOG}},
    },
    "providerStatus": {
        "summary": "Provider health",
        "description": "The router's live view of each (provider, model): health status, "
        "breaker state, EWMA latency and error rate, last error. `llmgw providers status --url` "
        "reads it.",
        "tag": "Operations",
        "responses": {
            "200": {
                "application/json": {
                    "object": "list",
                    "data": [
                        {
                            "provider": "local",
                            "model": "gpt-4o-mini",
                            "status": "healthy",
                            "breaker": "closed",
                            "retry_after": 0.0,
                            "latency_ms": 5.25,
                            "error_rate": 0.0,
                            "requests": 2,
                            "failures": 0,
                            "last_error": None,
                            "last_error_at": None,
                            "last_ok_at": "2026-12-03T06:46:53.586057+00:00",
                        }
                    ],
                }
            }
        },
    },
    "liveness": {
        "summary": "Liveness",
        "description": "200 while the process runs (no dependency is checked).",
        "tag": "Operations",
        "responses": {"200": {"application/json": {"status": "ok"}}},
    },
    "readiness": {
        "summary": "Readiness",
        "description": "200 when the database is reachable and migrated; 503 with `problems` "
        "otherwise, and while shutting down.",
        "tag": "Operations",
        "responses": {
            "200": {"application/json": {"status": "ready"}},
            "503": {
                "application/json": {
                    "status": "unavailable",
                    "problems": ["draining: the server is shutting down"],
                }
            },
        },
    },
    "metrics": {
        "summary": "Prometheus metrics",
        "description": "Prometheus text exposition; needs `Authorization: Bearer <metrics_token>` "
        "when `server.metrics_token` is set.",
        "tag": "Operations",
        "responses": {
            "200": {
                "text/plain": "# HELP llmgw_requests_total Requests answered, by route, status "
                "class, provider and model.\n# TYPE llmgw_requests_total counter\n"
                'llmgw_requests_total{model="gpt-4o-mini",provider="local",'
                'route="/v1/chat/completions",status_class="2xx"} 2.0\n'
            }
        },
    },
    "openapi": {
        "summary": "This document",
        "description": "The OpenAPI 3.1 document of the gateway (the source of docs/api.md's "
        "operation list and of the Postman collection).",
        "tag": "Operations",
        "responses": {
            "200": {"application/json": {"openapi": "3.1.0", "info": {"title": "llmgw"}}}
        },
    },
}
"""Per ``operationId``: summary, description, tag, request body, path parameters, answers."""

ERRORS: dict[str, dict[str, Any]] = {
    "400": {"message": "request body is not valid JSON", "type": "invalid_request_error",
            "param": None, "code": None},
    "401": {"message": "invalid API key", "type": "authentication_error", "param": None,
            "code": "invalid_api_key"},
    "403": {"message": "this API key may not use model 'local/gpt-4o'", "type": "permission_error",
            "param": "model", "code": "model_not_allowed"},
    "404": {"message": "model 'nope/x' does not exist or is not configured",
            "type": "invalid_request_error", "param": "model", "code": "model_not_found"},
    "408": {"message": "The request headers did not arrive within 30 seconds.", "type": "invalid_request_error",
            "param": None, "code": "request_timeout"},
    "413": {"message": "request body is larger than the limit of 1048576 bytes",
            "type": "invalid_request_error", "param": None, "code": "payload_too_large"},
    "402": {"message": "budget exceeded for this API key: 1003.20 of 1000.00 RUB this day; resets "
                       "at 2026-12-04T00:00:00Z",
            "type": "insufficient_quota", "param": None, "code": "budget_exceeded"},
    "429": {"message": "rate limit reached for this API key: 60 requests per minute; retry in 1s",
            "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"},
    "502": {"message": "upstream local failed (HTTP 500)", "type": "api_error", "param": None,
            "code": "upstream_error"},
    "503": {"message": "every upstream for this model is failing; the circuit is open",
            "type": "api_error", "param": None, "code": "circuit_open"},
    "504": {"message": "upstream local timed out (HTTP 504)", "type": "api_error", "param": None,
            "code": "upstream_timeout"},
}  # fmt: skip
"""One OpenAI error envelope per status, as the gateway sends it."""


def annotate(document: dict[str, Any]) -> dict[str, Any]:
    """Add summaries, tags and examples to every operation of ``document`` that has them here."""
    for item in document["paths"].values():
        for op in item.values():
            info = OPERATIONS.get(op.get("operationId", ""))
            if info is None:
                continue
            op.setdefault("summary", info["summary"])
            op.setdefault("description", info["description"])
            op.setdefault("tags", [info["tag"]])
            if "request" in info and "requestBody" in op:
                media = op["requestBody"]["content"]["application/json"]
                media["example"] = copy.deepcopy(info["request"])
            for param in op.get("parameters", []):
                if param["name"] in info.get("parameters", {}):
                    param["example"] = info["parameters"][param["name"]]
            for status, response in op.get("responses", {}).items():
                bodies = info["responses"].get(status, {})
                for media_type, media in response.get("content", {}).items():
                    if media_type in bodies:
                        media["example"] = copy.deepcopy(bodies[media_type])
                    elif status in ERRORS and media_type == "application/json":
                        media["example"] = {"error": dict(ERRORS[status])}
    return document
