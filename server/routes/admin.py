"""``/admin/v1/...``: the admin API, the same ``LocalAdmin`` operations the CLI runs locally.

Every route is an ``AdminOperation`` of the request pipeline (``server/pipeline.py``), which
authenticates the key (the key cache), asks ``require_admin`` (the one admin check; OAuth tokens
plug in there), admits the call against the key's own ``rpm`` like any route, decodes a JSON
body and answers JSON or the OpenAI error envelope. The operations here run ``LocalAdmin`` in a
worker thread (the database calls block) as the caller, with ``source`` from
``X-Llmgw-Source``, or answer from the server's memory (recent requests, live provider state,
whoami). A key without the admin role gets 403 before any operation runs, so it learns nothing
about other keys or users (AUTH-5, AUTH-6). Wire format: ``llmgw.admin.remote`` (the client)
documents it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.routing import Route
from starlette.types import Scope

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import UNSET, Actor, Record
from llmgw.admin.records import provider_record, recent_record
from llmgw.errors import InvalidRequest, PermissionDenied
from llmgw.server.pipeline import AdminOperation, AdminRoute
from llmgw.server.state import Gateway

__all__ = ["admin_routes", "require_admin"]

PREFIX = "/admin/v1"
_SOURCES = {"cli", "tui", "api"}
_MAX_RECENT = 1000
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")

Handler = Callable[[LocalAdmin, Mapping[str, str], Mapping[str, str], dict[str, Any]], object]


def require_admin(key: Any, scope: Scope) -> Actor:
    """The caller as an ``Actor`` when ``key`` belongs to an admin (an API key of an admin user,
    or an access token of an admin user carrying the ``admin`` scope); ``PermissionDenied``
    (403) otherwise, saying nothing about any other key or user."""
    scopes = getattr(key, "scopes", None)  # a token (TokenKey) also needs the admin scope
    if getattr(key, "user_role", None) != "admin" or (scopes is not None and "admin" not in scopes):
        raise PermissionDenied(
            "this API key may not use the admin API",
            hint="an admin makes a user admin with `llmgw users set-role EMAIL admin`",
            code="admin_required",
        )
    client = scope.get("client")
    return Actor(
        name=key.user_email or key.prefix,
        kind="key" if scopes is None else "token",
        role="admin",
        remote_addr=client[0] if client else None,
    )


def _source(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-llmgw-source":
            text = value.decode("latin-1").strip().lower()
            return text if text in _SOURCES else "api"
    return "api"


# -- parsing query parameters and bodies -----------------------------------------------------


def _bad(name: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"invalid {name}: {why}", param=name)


def _time(q: Mapping[str, str], name: str) -> datetime | None:
    text = q.get(name)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(name, "use ISO 8601 with a time zone, e.g. 2026-12-01T00:00:00+00:00") from None
    if when.tzinfo is None:
        raise _bad(name, "the time needs a time zone (+00:00 or Z)")
    return when


def _int(q: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    text = q.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 10:
        raise _bad(name, "a whole number")
    return int(text)


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _bad(name, "a whole number or null")
    return value


def _opt_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _bad(name, "a string or null")
    return value


def _models(body: Mapping[str, Any]) -> list[str] | None:
    value = body.get("models")
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(m, str) for m in value)
    ):
        raise _bad("models", "a list of model names or null")
    return value


def _key_create(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    name = b.get("name")
    if not isinstance(name, str):
        raise _bad("name", "a string is required")
    seconds = b.get("expires_in")
    if seconds is not None and (
        not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0
    ):
        raise _bad("expires_in", "a positive number of seconds or null")
    try:
        expires = timedelta(seconds=seconds) if seconds is not None else None
    except OverflowError:
        raise _bad("expires_in", "at most 100 years") from None
    return a.keys_create(
        name,
        user=_opt_str(b, "user"),
        expires=expires,
        rpm=_opt_int(b, "rpm"),
        tpm=_opt_int(b, "tpm"),
        models=_models(b),
    )


def _key_update(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    unknown = set(b) - {"rpm", "tpm", "models", "expires_at"}
    if unknown:
        raise _bad(sorted(unknown)[0], "not a key setting (rpm, tpm, models, expires_at)")
    expires_at: Any = UNSET
    if "expires_at" in b:
        text = _opt_str(b, "expires_at")
        expires_at = _time({"expires_at": text}, "expires_at") if text is not None else None
    return a.keys_update(
        p["ref"],
        rpm=_opt_int(b, "rpm") if "rpm" in b else UNSET,
        tpm=_opt_int(b, "tpm") if "tpm" in b else UNSET,
        models=_models(b) if "models" in b else UNSET,
        expires_at=expires_at,
    )


def _user_create(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    email = b.get("email")
    if not isinstance(email, str):
        raise _bad("email", "a string is required")
    role = _opt_str(b, "role") or "user"
    return a.users_create(email, name=_opt_str(b, "name"), role=role)


def _user_update(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    role = b.get("role")
    if not isinstance(role, str) or set(b) != {"role"}:
        raise _bad("role", 'the body is {"role": "user"|"admin"}')
    return a.users_set_role(p["ref"], role)


def _usage_stats(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    return a.usage_stats(
        since=_time(q, "since"),
        until=_time(q, "until"),
        by=q.get("by", "day"),
        key=q.get("key"),
        user=q.get("user"),
        model=q.get("model"),
        provider=q.get("provider"),
        status=_int(q, "status"),
    )


def _budget_set(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    unknown = set(b) - {"key", "user", "period", "amount", "currency", "thresholds", "hard_stop"}
    if unknown:
        raise _bad(sorted(unknown)[0], "not a budget setting")
    amount = b.get("amount")
    if not isinstance(amount, str | int | float) or isinstance(amount, bool):
        raise _bad("amount", "a number or a decimal string is required")
    marks = b.get("thresholds", "80,100")
    if not isinstance(marks, str) and not (
        isinstance(marks, list) and all(isinstance(m, int) for m in marks)
    ):
        raise _bad("thresholds", 'a list of percentages or "80,100"')
    hard = b.get("hard_stop", False)
    if not isinstance(hard, bool):
        raise _bad("hard_stop", "true or false")
    return a.budgets_set(
        key=_opt_str(b, "key"),
        user=_opt_str(b, "user"),
        period=_opt_str(b, "period") or "month",
        amount=str(amount),
        currency=_opt_str(b, "currency"),
        thresholds=marks,
        hard_stop=hard,
    )


def _quota_set(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    unknown = set(b) - {"key", "user", "model", "rpm", "tpm"}
    if unknown:
        raise _bad(sorted(unknown)[0], "not a quota setting (key, user, model, rpm, tpm)")
    return a.quotas_set(
        key=_opt_str(b, "key"),
        user=_opt_str(b, "user"),
        model=_opt_str(b, "model"),
        rpm=_opt_int(b, "rpm"),
        tpm=_opt_int(b, "tpm"),
    )


def _audit(a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]) -> object:
    return a.audit_list(
        since=_time(q, "since"),
        limit=_int(q, "limit", 100) or 0,
        actor=q.get("actor"),
        action=q.get("action"),
    )


def _provider_fields(b: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A provider body's fields and its credential (``api_key``: sealed, never echoed)."""
    fields = {k: v for k, v in b.items() if k not in ("name", "kind", "api_key")}
    secret = b.get("api_key")
    if secret is not None and not isinstance(secret, str):
        raise _bad("api_key", "use a string")
    return fields, secret


def _provider_add(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    name, kind = b.get("name"), b.get("kind")
    if not isinstance(name, str) or not name:
        raise _bad("name", "give the provider's name")
    if not isinstance(kind, str) or not kind:
        raise _bad("kind", "use openai, gigachat or yandexgpt")
    fields, secret = _provider_fields(b)
    return a.providers_add(name, kind, fields, secret=secret)


def _provider_edit(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    if "name" in b or "kind" in b:
        raise _bad("name" if "name" in b else "kind", "cannot change; remove and add instead")
    fields, secret = _provider_fields(b)
    return a.providers_edit(p["name"], fields, secret=secret)


def _alias_targets(b: dict[str, Any], allowed: set[str]) -> list[Any]:
    unknown = set(b) - allowed
    if unknown:
        raise _bad(sorted(unknown)[0], f"not an alias field ({', '.join(sorted(allowed))})")
    targets = b.get("targets")
    if not isinstance(targets, list):
        raise _bad("targets", 'a list of "provider/model" or {"target", "weight"} is required')
    return targets


def _alias_add(
    a: LocalAdmin, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    targets = _alias_targets(b, {"name", "targets"})
    name = b.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("name", "give the alias's name")
    return a.aliases_add(name, targets)


_OPS: list[tuple[str, str, Handler]] = [
    ("GET", "/keys", lambda a, p, q, b: a.keys_list(include_revoked=q.get("all") == "true")),
    ("POST", "/keys", _key_create),
    ("GET", "/keys/{ref:path}", lambda a, p, q, b: a.keys_show(p["ref"])),
    ("PATCH", "/keys/{ref:path}", _key_update),
    ("POST", "/keys/{ref:path}/revoke", lambda a, p, q, b: a.keys_revoke(p["ref"])),
    ("POST", "/keys/{ref:path}/rotate", lambda a, p, q, b: a.keys_rotate(p["ref"])),
    ("GET", "/users", lambda a, p, q, b: a.users_list()),
    ("POST", "/users", _user_create),
    ("GET", "/users/{ref:path}", lambda a, p, q, b: a.users_show(p["ref"])),
    ("PATCH", "/users/{ref:path}", _user_update),
    ("POST", "/users/{ref:path}/disable", lambda a, p, q, b: a.users_disable(p["ref"])),
    ("POST", "/users/{ref:path}/enable", lambda a, p, q, b: a.users_enable(p["ref"])),
    ("GET", "/usage/stats", _usage_stats),
    (
        "GET",
        "/usage/recommend",
        lambda a, p, q, b: a.usage_recommend(since=_time(q, "since"), until=_time(q, "until")),
    ),
    ("GET", "/audit", _audit),
    ("GET", "/budgets", lambda a, p, q, b: a.budgets_list()),
    ("POST", "/budgets", _budget_set),
    ("GET", "/budgets/{ref}", lambda a, p, q, b: a.budgets_show(p["ref"])),
    ("DELETE", "/budgets/{ref}", lambda a, p, q, b: a.budgets_delete(p["ref"])),
    ("GET", "/quotas", lambda a, p, q, b: a.quotas_list()),
    ("POST", "/quotas", _quota_set),
    ("DELETE", "/quotas/{ref}", lambda a, p, q, b: a.quotas_delete(p["ref"])),
    ("GET", "/aliases", lambda a, p, q, b: a.aliases_list()),
    ("POST", "/aliases", _alias_add),
    (
        "PATCH",
        "/aliases/{name}",
        lambda a, p, q, b: a.aliases_edit(p["name"], _alias_targets(b, {"targets"})),
    ),
    ("DELETE", "/aliases/{name}", lambda a, p, q, b: a.aliases_remove(p["name"])),
    ("GET", "/providers/prices", lambda a, p, q, b: a.providers_prices()),
    ("GET", "/providers/stored", lambda a, p, q, b: a.providers_stored()),
    ("POST", "/providers", _provider_add),
    ("PATCH", "/providers/{name}", _provider_edit),
    ("DELETE", "/providers/{name}", lambda a, p, q, b: a.providers_remove(p["name"])),
    (
        "POST",
        "/providers/{name}/disable",
        lambda a, p, q, b: a.providers_set_enabled(p["name"], False),
    ),
    (
        "POST",
        "/providers/{name}/enable",
        lambda a, p, q, b: a.providers_set_enabled(p["name"], True),
    ),
    (
        "POST",
        "/providers/{name}/test",
        lambda a, p, q, b: a.providers_test(p["name"], model=_opt_str(b, "model")),
    ),
]


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


class _Database(AdminOperation):
    """A ``LocalAdmin`` operation, run in a worker thread as the caller."""

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        self.method = method
        self.path = PREFIX + path
        self.handler = handler

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        loop = asyncio.get_running_loop()

        def announce(change: Any) -> None:
            """After a committed change (in the worker thread): this process's key cache at
            once, other instances through Redis when configured (``Gateway.publisher``)."""
            loop.call_soon_threadsafe(g.auth.apply, change)
            if g.publisher is not None:
                g.publisher.publish(change)

        admin = LocalAdmin(
            g.engine,
            actor,
            _source(scope),
            on_change=announce,
            settings=g.settings,
            live=g.live_settings,
        )
        params = scope.get("path_params", {})
        return await asyncio.to_thread(self.handler, admin, params, _query(scope), body)


class _Recent(AdminOperation):
    """The newest finished requests, from the in-memory ring (never the database)."""

    path = PREFIX + "/usage/recent"

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        limit = _int(_query(scope), "limit", 100) or 0
        if not 1 <= limit <= _MAX_RECENT:
            raise _bad("limit", f"use 1 to {_MAX_RECENT}")
        newest = list(g.recent)[-limit:]
        return [recent_record(_event_row(ev), prefix) for ev, prefix in reversed(newest)]


class _Providers(AdminOperation):
    """The router's live state of every (provider, model)."""

    path = PREFIX + "/providers"

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        return [provider_record(r, live=True) for r in g.router.health.snapshot(history=True)]


class _Models(AdminOperation):
    """The whole model catalog; ``?refresh=true`` asks every provider first."""

    path = PREFIX + "/models"

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        refresh = _query(scope).get("refresh", "false")
        if refresh not in ("true", "false"):
            raise _bad("refresh", "use true or false")
        if refresh == "true":
            await g.catalog.refresh()
        return g.catalog.describe()


class _Whoami(AdminOperation):
    """The caller as the server sees them, and the server's own address."""

    path = PREFIX + "/whoami"

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        record: Record = {
            "actor": actor.name,
            "actor_kind": actor.kind,
            "role": actor.role,
            "mode": "remote",
            "url": _server_url(scope),
        }
        return record


def _server_url(scope: Scope) -> str:
    """This server's address as the caller reached it (scheme, ``Host``, root path)."""
    scheme = scope.get("scheme", "http")
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            text = value.decode("latin-1")
            host = text if _HOST.fullmatch(text) else None
            break
    if not host:
        server = scope.get("server") or ("localhost", None)
        host, port = server[0], server[1]
        default = {"http": 80, "https": 443}.get(scheme)
        if port is not None and port != default:
            host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{host}{scope.get('root_path', '')}".rstrip("/")


def admin_routes(g: Gateway) -> list[Route]:
    """The ``/admin/v1`` routes bound to gateway ``g``."""
    ops: list[AdminOperation] = [_Database(method, path, h) for method, path, h in _OPS]
    ops += [_Recent(), _Providers(), _Models(), _Whoami()]
    return [Route(op.path, AdminRoute(g, op, require_admin), methods=[op.method]) for op in ops]


def _event_row(ev: Any) -> dict[str, Any]:
    """A ``UsageEvent``'s fields that a recent-request record shows."""
    return {
        "created_at": ev.created_at,
        "request_id": ev.request_id,
        "key_id": ev.key_id,
        "user_id": ev.user_id,
        "token_id": ev.token_id,
        "endpoint": ev.endpoint,
        "provider": ev.provider,
        "model": ev.model,
        "model_version": ev.model_version,
        "stream": ev.stream,
        "status": ev.status,
        "error_type": ev.error_type,
        "latency_ms": ev.latency_ms,
        "ttft_ms": ev.ttft_ms,
        "prompt_tokens": ev.prompt_tokens,
        "completion_tokens": ev.completion_tokens,
        "total_tokens": ev.total_tokens,
        "cost": ev.cost,
    }
