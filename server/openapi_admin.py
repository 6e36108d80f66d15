"""The ``/admin/v1`` operations in the OpenAPI document, each with its examples.

Kept beside ``openapi.py`` (the OpenAI-compatible and operational routes) so that file stays
small; ``openapi_document`` adds ``admin_paths()``. The examples are records as ``LocalAdmin``
returns them (``tests/server/test_admin_api.py`` checks the answers have these shapes).
"""

from __future__ import annotations

import copy
from typing import Any

from llmgw.server.openapi_examples import CATALOG
from llmgw.server.openapi_providers import add_operation, alias_paths, stored_provider_paths

__all__ = ["admin_paths"]

_T = "2026-12-03T07:24:27.123456+00:00"
_KEY = {
    "id": "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b",
    "name": "ci",
    "prefix": "llmgw_AbCdEf",
    "user": "ann@example.com",
    "user_id": "7b1d04e2-1111-4222-8333-944455556666",
    "status": "active",
    "created_at": _T,
    "expires_at": None,
    "revoked_at": None,
    "last_used_at": None,
    "rpm": 60,
    "tpm": 100000,
    "models": ["local/*"],
    "rotated_from": None,
}
_NEW_KEY = {**_KEY, "key": "llmgw_AbCdEf" + "x" * 37}
_USER = {
    "id": "7b1d04e2-1111-4222-8333-944455556666",
    "email": "ann@example.com",
    "name": "Ann",
    "role": "user",
    "status": "active",
    "keys": 1,
    "created_at": _T,
}
_STATS = {
    "day": "2026-12-03",
    "requests": 120,
    "errors": 2,
    "prompt_tokens": 2400,
    "completion_tokens": 3600,
    "total_tokens": 6000,
    "cost": "0.0025200000",
    "currency": "USD",
    "costs": {"USD": "0.0025200000"},
    "avg_latency_ms": 412.5,
    "p95_latency_ms": 980.0,
    "streamed": 48,
    "truncated": 3,
}
_RECOMMENDATION = {
    "kind": "cheaper_model",
    "subject": "openai/gpt-4o:2024-08-06",
    "recommendation": "move traffic from openai/gpt-4o:2024-08-06 to openai/gpt-4o-mini with an "
    'alias (e.g. [aliases] chat = ["openai/gpt-4o-mini"]): it serves requests of the same size '
    "(310/120 prompt/completion tokens on average, against 300/118) at 6% of the cost per token",
    "saving": {"USD": "41.27"},
    "evidence": {
        "requests": 9120,
        "tokens": 3830400,
        "cost": "43.90",
        "currency": "USD",
        "alternative": "openai/gpt-4o-mini",
        "alternative_requests": 27400,
        "cost_per_1k_tokens": "0.01",
        "alternative_cost_per_1k_tokens": "0.000687",
    },
}
_PRICE = {
    "provider": "local",
    "kind": "openai",
    "model": "gpt-4o-mini",
    "currency": "USD",
    "input": "0.15",
    "output": "0.6",
    "source": "bundled",
    "entry": "gpt-4o-mini",
    "as_of": "2025-08",
    "reference": "openai.com/api/pricing",
    "units": None,
    "note": None,
    "offered": True,
    "table_version": "2026.12.03",
}
_RECENT = {
    "at": _T,
    "request_id": "req_0123456789abcdef",
    "key_prefix": "llmgw_AbCdEf",
    "key_id": _KEY["id"],
    "user_id": _USER["id"],
    "token_id": None,
    "endpoint": "chat",
    "provider": "local",
    "model": "gpt-4o-mini",
    "model_version": None,
    "stream": False,
    "status": 200,
    "error_type": None,
    "latency_ms": 412.512,
    "ttft_ms": None,
    "prompt_tokens": 20,
    "completion_tokens": 30,
    "total_tokens": 50,
    "cost": "0.0000210000",
}
_PROVIDER = {
    "provider": "local",
    "model": "gpt-4o-mini",
    "status": "healthy",
    "breaker": "closed",
    "retry_after": 0.0,
    "latency_ms": 410.2,
    "error_rate": 0.01,
    "requests": 120,
    "failures": 1,
    "last_error": "upstream local failed (HTTP 500)",
    "last_error_at": _T,
    "last_ok_at": _T,
    "in_flight": 2,
    "requests_per_min": 42,
    "history_seconds": 5.0,
    "history": [  # 120 buckets (ten minutes) in a real answer, oldest first, the current last
        {"requests": 0, "failures": 0, "latency_ms": None, "error_rate": None},
        {"requests": 4, "failures": 1, "latency_ms": 398.5, "error_rate": 0.25},
        {"requests": 3, "failures": 0, "latency_ms": 405.0, "error_rate": 0.0},
    ],
    "live": True,
}
_AUDIT = {
    "id": 42,
    "at": _T,
    "actor": "root@example.com",
    "actor_kind": "key",
    "action": "keys.update",
    "target": "llmgw_AbCdEf",
    "source": "cli",
    "remote_addr": "10.0.0.7",
    "detail": {"id": _KEY["id"], "rpm": {"from": 60, "to": 120}},
}
_WHOAMI = {
    "actor": "root@example.com",
    "actor_kind": "key",
    "role": "admin",
    "mode": "remote",
    "url": None,
}

_ERRORS = {
    "400": ("Bad input; `param` names the field.", "invalid rpm 0", "invalid_request_error", None),
    "401": ("No key, or an unknown, revoked or expired one.", "invalid API key",
            "authentication_error", "invalid_api_key"),
    "403": ("The key's user is not an admin (the same answer on every admin route).",
            "this API key may not use the admin API", "permission_error", "admin_required"),
    "404": ("No such key or user.", "no API key matches 'llmgw_AbCdEf'", "not_found_error", None),
    "409": ("The object's state forbids the change (a revoked key, a taken email).",
            "key llmgw_AbCdEf is revoked", "conflict_error", None),
    "429": ("Beyond the calling key's rpm.", "rate limit reached for this API key",
            "rate_limit_error", "rate_limit_exceeded"),
    "503": ("The database is down.", "database error while listing keys",
            "api_error", "database_unavailable"),
}  # fmt: skip


_BUDGET = {
    "id": "5c0ffee0-1234-4abc-8def-0123456789ab",
    "scope": "key",
    "subject_id": _KEY["id"],
    "subject": "ci (llmgw_AbCdEf)",
    "period": "day",
    "currency": "RUB",
    "amount": "1000.0000000000",
    "thresholds": [80, 100],
    "hard_stop": True,
    "period_start": "2026-12-03T00:00:00+00:00",
    "resets_at": "2026-12-04T00:00:00+00:00",
    "spent": "812.5000000000",
    "percent": 81.2,
    "notified": [80],
    "created_at": _T,
    "updated_at": _T,
}
_QUOTA = {
    "id": "9a8b7c6d-1234-4abc-8def-0123456789ab",
    "scope": "user",
    "subject_id": _USER["id"],
    "subject": "ann@example.com",
    "model": "yandexgpt-lite:rc",
    "rpm": 30,
    "tpm": 20000,
    "created_at": _T,
    "updated_at": _T,
}
_BREF = "A budget's id or its first 8+ hex digits."


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": [item]}


def _op(
    op_id: str,
    summary: str,
    description: str,
    answer: dict[str, Any],
    *,
    errors: tuple[str, ...] = ("401", "403", "429", "503"),
    body: dict[str, Any] | None = None,
    ref: str | None = None,
    query: dict[str, tuple[Any, str]] | None = None,
) -> dict[str, Any]:
    obj = {"type": "object"}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["Admin"],
        "security": [{"bearer": []}],
        "responses": {
            "200": {
                "description": "The record(s), as the CLI's --json prints them.",
                "content": {"application/json": {"schema": obj, "example": answer}},
            }
        },
    }
    params = []
    if ref is not None:
        params.append(
            {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"},
             "description": ref, "example": "llmgw_AbCdEf" if "key" in ref else "ann@example.com"}
        )  # fmt: skip
    for name, (example, text) in (query or {}).items():
        params.append(
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": text, "example": example}
        )  # fmt: skip
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": obj, "example": body}},
        }
    for status in sorted({*errors, "401", "403"}):
        text, message, kind, code = _ERRORS[status]
        op["responses"][status] = {
            "description": text,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"},
                    "example": {
                        "error": {"message": message, "type": kind, "param": None, "code": code}
                    },
                }
            },
        }
    return op


_KREF = (
    "A key's name (URL-encoded; several keys of the name are a 400), id, its first 8+ hex "
    "digits, or its prefix (never the whole secret)."
)
_UREF = (
    "A user's email (any case), id, its first 8+ hex digits, or display name (URL-encoded); "
    "a ref naming several users is a 400."
)
_SINCE = ("2026-12-01T00:00:00+00:00", "Only from this time on (ISO 8601 with a zone).")


def _provider_test() -> dict[str, Any]:
    """``POST /providers/{name}/test``: the server's own round trip to one provider."""
    op = _op("adminTestProvider", "Test a provider",
        "One real round trip from the server to the provider: DNS, TCP and TLS to its API (and "
        "token host), then a 1-token chat (or a model listing when no chat model is known), with "
        "the server's configuration and secrets. Recorded in the audit log as `providers.test`. "
        "A failure is the diagnosed error: 401 auth rejected by the upstream, 502 TLS failure or "
        "connection refused, 504 timeout.",
        {"provider": "local", "ok": True, "check": "chat", "latency_ms": 412.5,
         "model": "gpt-4o-mini"},
        errors=("401", "403", "404", "429"), body={"model": "gpt-4o-mini"})  # fmt: skip
    op["parameters"] = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The provider's name in the server's configuration.", "example": "local"}
    ]  # fmt: skip
    return op


def admin_paths() -> dict[str, Any]:
    """The ``/admin/v1`` path items."""
    p = "/admin/v1"
    std = ("401", "403", "429", "503")
    one = (*std, "404")
    paths: dict[str, Any] = {
        f"{p}/whoami": {"get": _op("adminWhoami", "Who the call runs as",
            "The calling key's owner and role.", _WHOAMI)},
        f"{p}/keys": {
            "get": _op("adminListKeys", "List keys", "Live keys, oldest first; `all=true` "
                "adds revoked ones.", _listed(_KEY), query={"all": ("true", "Include revoked keys.")}),
            "post": _op("adminCreateKey", "Create a key", "A new key; the answer's `key` is "
                "its secret, shown this once.", _NEW_KEY, errors=(*one, "400", "409"),
                body={"name": "ci", "user": "ann@example.com", "expires_in": 2592000,
                      "rpm": 60, "tpm": 100000, "models": ["local/*"]}),
        },
        f"{p}/keys/{{ref}}": {
            "get": _op("adminShowKey", "Show a key", "One key (never its secret).", _KEY,
                errors=(*one, "400"), ref=_KREF),
            "patch": _op("adminUpdateKey", "Edit a key", "Change rpm, tpm, models or "
                "expires_at; a field left out stays, null clears it.", {**_KEY, "rpm": 120},
                errors=(*one, "400", "409"), ref=_KREF, body={"rpm": 120, "tpm": None}),
        },
        f"{p}/keys/{{ref}}/revoke": {"post": _op("adminRevokeKey", "Revoke a key",
            "Revoke now (idempotent); servers refuse it within 1 s with Redis.",
            {**_KEY, "status": "revoked", "revoked_at": _T}, errors=(*one, "400"), ref=_KREF)},
        f"{p}/keys/{{ref}}/rotate": {"post": _op("adminRotateKey", "Rotate a key",
            "A new secret with the same settings; the old key is revoked.",
            {**_NEW_KEY, "rotated_from": _KEY["id"]}, errors=(*one, "400", "409"), ref=_KREF)},
        f"{p}/users": {
            "get": _op("adminListUsers", "List users", "Every user, oldest first.",
                _listed(_USER)),
            "post": _op("adminCreateUser", "Create a user", "A new user (role user or admin).",
                _USER, errors=(*std, "400", "409"),
                body={"email": "ann@example.com", "name": "Ann", "role": "user"}),
        },
        f"{p}/users/{{ref}}": {
            "get": _op("adminShowUser", "Show a user", "One user.", _USER, errors=(*one, "400"),
                ref=_UREF),
            "patch": _op("adminSetRole", "Change a user's role", "The body is {\"role\"}.",
                {**_USER, "role": "admin"}, errors=(*one, "400"), ref=_UREF,
                body={"role": "admin"}),
        },
        f"{p}/users/{{ref}}/disable": {"post": _op("adminDisableUser", "Disable a user",
            "Their keys stop working (idempotent).", {**_USER, "status": "disabled"},
            errors=(*one, "400"), ref=_UREF)},
        f"{p}/users/{{ref}}/enable": {"post": _op("adminEnableUser", "Enable a user",
            "Their unexpired, unrevoked keys work again.", _USER, errors=(*one, "400"),
            ref=_UREF)},
        f"{p}/usage/stats": {"get": _op("adminUsageStats", "Usage statistics",
            "Requests, errors, tokens, cost, latency per group. `costs` is the cost per "
            "currency (each provider's); `cost` and `currency` are set when the group's cost is in "
            "one currency, `cost` is null when it mixes several: never added across currencies.",
            _listed(_STATS),
            errors=(*one, "400"), query={
                "since": _SINCE,
                "until": ("2026-12-04T00:00:00+00:00", "Only before this time."),
                "by": ("day", "day, hour, model (provider/model:version), version, provider, key, user or status."),
                "key": ("llmgw_AbCdEf", "Only this key."),
                "user": ("ann@example.com", "Only this user."),
                "model": ("local/gpt-4o-mini", "Only this model[:version]."),
                "provider": ("local", "Only this provider."),
                "status": ("200", "Only this HTTP status."),
            })},
        f"{p}/usage/recommend": {"get": _op("adminUsageRecommend", "Recommendations",
            "Optimisation suggestions from the window's usage (cheaper model of similar usage, "
            "deprecated versions, error-heavy routes, idle keys, answers cut at max_tokens), each "
            "with its evidence and its saving per currency over the window (never converted).",
            _listed(_RECOMMENDATION),
            errors=(*one, "400"), query={
                "since": ("2026-11-03T00:00:00+00:00", "Window start (default: 30 days ago)."),
                "until": ("2026-12-03T00:00:00+00:00", "Window end (default: now)."),
            })},
        f"{p}/usage/recent": {"get": _op("adminRecentRequests", "Recent requests",
            "The newest requests from the server's memory (no database query).",
            _listed(_RECENT), errors=("400", "401", "403", "429"),
            query={"limit": ("20", "1 to 1000, default 100.")})},
        f"{p}/providers": {"get": _op("adminProviders", "Live provider state",
            "Router state per (provider, model): breaker, EWMA latency and error rate, attempts in "
            "flight, requests in the last minute, the last error and its time, and `history`: "
            "120 five-second buckets (requests, failures, mean latency of successes, error rate), "
            "oldest first, the current bucket last.",
            _listed(_PROVIDER), errors=("401", "403", "429"))},
        f"{p}/providers/prices": {"get": _op("adminProviderPrices", "Effective prices",
            "The price in force per 1M tokens for every model of every configured provider and "
            "where it came from: `config` ([providers.prices]), `bundled` (the versioned table "
            "shipped with llmgw, with its date and source; YandexGPT's billing units in `units`) "
            "or `unpriced` (recorded at cost 0). One currency per provider; never converted.",
            _listed(_PRICE), errors=("401", "403", "429"))},
        f"{p}/providers/{{name}}/test": {"post": _provider_test()},
        **stored_provider_paths(p, _op, _listed),
        **alias_paths(p, _op, _listed),
        f"{p}/models": {"get": _op("adminModels", "The whole model catalog",
            "`GET /api/models` for every model of every provider; `refresh=true` makes the "
            "server ask every provider now (an upstream call per provider; concurrent refreshes "
            "share one round) instead of answering from its cache. `llmgw providers models "
            "--url` reads it.", CATALOG, errors=("400", "401", "403", "429"),
            query={"refresh": ("true", "true: ask the providers first; false (default): the cache.")})},
        f"{p}/budgets": {
            "get": _op("adminListBudgets", "List budgets", "Every budget with its current "
                "period (UTC day or month), the spend recorded in the database for it, the "
                "percentage and the thresholds already notified.", _listed(_BUDGET)),
            "post": _op("adminSetBudget", "Set a budget", "Create or replace the budget of a "
                "key or a user (exactly one) for a period in one currency (default: the "
                "providers' one currency). `thresholds` notify once per period each; "
                "`hard_stop` refuses requests with 402 `budget_exceeded` once spent.", _BUDGET,
                errors=(*one, "400"), body={"key": "llmgw_AbCdEf", "period": "day",
                "amount": "1000", "currency": "RUB", "thresholds": [80, 100],
                "hard_stop": True}),
        },
        f"{p}/budgets/{{ref}}": {
            "get": _op("adminShowBudget", "Show a budget", "One budget.", _BUDGET,
                errors=(*one, "400"), ref=_BREF),
            "delete": _op("adminDeleteBudget", "Delete a budget", "The record as it was.",
                _BUDGET, errors=(*one, "400"), ref=_BREF),
        },
        f"{p}/quotas": {
            "get": _op("adminListQuotas", "List quotas", "Per-user (every model, all of the "
                "user's keys together) and per-model-version rpm/tpm limits.", _listed(_QUOTA)),
            "post": _op("adminSetQuota", "Set a quota", "Create or replace the rpm/tpm of a "
                "user (`model` null) or of a key or user on a model version "
                "(`model[:version]` or `provider/model[:version]`).", _QUOTA,
                errors=(*one, "400"), body={"user": "ann@example.com",
                "model": "yandexgpt-lite:rc", "rpm": 30, "tpm": 20000}),
        },
        f"{p}/quotas/{{ref}}": {
            "delete": _op("adminDeleteQuota", "Delete a quota", "The record as it was.",
                _QUOTA, errors=(*one, "400"), ref="A quota's id or its first 8+ hex digits."),
        },
        f"{p}/audit": {"get": _op("adminAudit", "The audit log",
            "Admin actions, newest first.", _listed(_AUDIT), errors=(*std, "400"), query={
                "since": _SINCE,
                "limit": ("50", "At most this many (1-10000, default 100)."),
                "actor": ("root@example.com", "Only this actor."),
                "action": ("keys.*", "An action, or a group ending in .*."),
            })},
    }  # fmt: skip
    paths[f"{p}/providers"]["post"] = add_operation(_op)
    return copy.deepcopy(paths)
