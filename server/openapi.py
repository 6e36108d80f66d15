"""The gateway's own OpenAPI 3.1 document, served at ``GET /openapi.json`` (and fuzzed in tests)."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw import __version__
from llmgw.schemas import ChatRequest, EmbeddingRequest
from llmgw.server.openapi_admin import admin_paths
from llmgw.server.openapi_alerts import alert_paths
from llmgw.server.openapi_conversations import conversation_paths
from llmgw.server.openapi_examples import annotate
from llmgw.server.openapi_oauth import oauth_paths
from llmgw.server.openapi_pages import page_paths

__all__ = ["openapi_document", "openapi_json"]

_REF = "#/components/schemas/{model}"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERRORS = {
    "400": "Invalid JSON, invalid UTF-8, schema violation or a forbidden steering field.",
    "401": "Missing, malformed, unknown, expired or revoked API key.",
    "403": "The key's model allow-list does not include this model.",
    "402": "A budget with a hard stop is spent (`budget_exceeded`; `Retry-After` runs to its "
    "reset, see docs/budgets.md).",
    "404": "Unknown model or alias, or no provider serves it (an upstream 404 after fallback).",
    "408": "The request's headers or body did not arrive within `server.request_receipt_timeout`.",
    "413": "Body larger than `server.max_body_bytes`.",
    "429": "A limit was hit (see `Retry-After`), or `budget_in_flight`: a hard-stop budget's "
    "rest is held by requests in flight (retry in a second; docs/budgets.md).",
    "502": "The upstream failed or answered with something unusable.",
    "503": "Unavailable (every candidate's circuit open, database down for an uncached key, "
    "shutting down).",
    "504": "The upstream did not answer in time.",
}


def _error_responses(codes: list[str]) -> dict[str, Any]:
    return {
        c: {
            "description": _ERRORS[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _bound_token_ids(node: dict[str, Any]) -> None:
    """Token ids are non-negative 32-bit integers (bigger numbers do not survive JSON as ints)."""
    items = node.get("items")
    if isinstance(items, dict):
        if items.get("type") == "integer":
            items.update(minimum=0, maximum=2**31 - 1)
        else:
            _bound_token_ids(items)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document describing every route the server answers."""
    schemas: dict[str, Any] = {"Error": _ERROR}
    for model in (ChatRequest, EmbeddingRequest):
        s = model.model_json_schema(ref_template=_REF)
        schemas.update(s.pop("$defs", {}))
        schemas[model.__name__] = s
    # EmbeddingRequest checks list sizes in a model validator, which JSON Schema cannot see.
    for alt in schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"]:
        if alt.get("type") == "array":
            alt.update(minItems=1, maxItems=2048)
            _bound_token_ids(alt)
    obj = {"type": "object"}
    upstream = ["400", "401", "402", "403", "404", "408", "413", "429", "502", "503", "504"]
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "llmgw",
            "version": __version__,
            "description": "OpenAI-compatible LLM gateway. Errors use OpenAI's envelope.",
        },
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "operationId": "createChatCompletion",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChatRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "A chat.completion object, or an SSE stream when "
                            "`stream` is true.",
                            "content": {
                                "application/json": {"schema": obj},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **_error_responses(upstream),
                    },
                }
            },
            "/v1/embeddings": {
                "post": {
                    "operationId": "createEmbedding",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/EmbeddingRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(obj, "An embeddings list."),
                        **_error_responses(upstream),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "operationId": "listModels",
                    "security": security,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["object", "data"],
                                "properties": {
                                    "object": {"const": "list"},
                                    "data": {"type": "array", "items": obj},
                                },
                            },
                            "Configured provider/model ids and aliases the key may use.",
                        ),
                        **_error_responses(["401", "503"]),
                    },
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "operationId": "retrieveModel",
                    "security": security,
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "A model id from GET /v1/models (provider/model or an alias).",
                        }
                    ],
                    "responses": {
                        "200": _json(obj, "The model object, as in GET /v1/models."),
                        **_error_responses(["401", "404", "503"]),
                    },
                }
            },
            "/api/models": {
                "get": {
                    "operationId": "modelCatalog",
                    "security": security,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["object", "data", "providers", "ttl_seconds"],
                                "properties": {
                                    "object": {"const": "list"},
                                    "data": {"type": "array", "items": obj},
                                    "providers": {"type": "array", "items": obj},
                                    "ttl_seconds": {"type": "number"},
                                },
                            },
                            "The models the key may use with what is known of them, and their "
                            "providers' listing state.",
                        ),
                        **_error_responses(["401", "503"]),
                    },
                }
            },
            "/api/providers": {
                "get": {
                    "operationId": "providerStatus",
                    "security": security,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["object", "data"],
                                "properties": {
                                    "object": {"const": "list"},
                                    "data": {"type": "array", "items": obj},
                                },
                            },
                            "Health of each (provider, model): state, EWMA latency, error rate.",
                        ),
                        **_error_responses(["401", "503"]),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "liveness",
                    "security": [],
                    "responses": {"200": _json(obj, "The process is alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readiness",
                    "security": [],
                    "responses": {
                        "200": _json(obj, "Ready: database reachable, migrations current."),
                        "503": _json(obj, "Not ready; `problems` says why."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": {
                            "description": "`server.metrics_token` is set and the request did "
                            "not send it.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"},
                                    "example": {
                                        "error": {
                                            "message": "GET /metrics needs the metrics token",
                                            "type": "authentication_error",
                                            "param": None,
                                            "code": "invalid_metrics_token",
                                        }
                                    },
                                }
                            },
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": _json(obj, "This document.")},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
    }
    paths: dict[str, Any] = document["paths"]  # type: ignore[assignment]
    paths.update(conversation_paths())
    paths.update(admin_paths())
    paths.update(alert_paths())
    paths.update(page_paths())
    paths.update(oauth_paths())
    return annotate(document)


def openapi_json() -> bytes:
    """The document serialised once."""
    return orjson.dumps(openapi_document())
