"""``/admin/v1/tokens`` and ``/admin/v1/oauth/...``: personal access tokens, OAuth clients and
signing keys in the admin API (what ``llmgw tokens|oauth --url`` calls).

The same ``AdminOperation`` pipeline as the rest of ``/admin/v1`` (``require_admin``: an admin
key or an admin-scoped token of an admin user); each operation is a ``LocalIdentity`` call
(``llmgw.admin.identity``) in a worker thread with the gateway's token service, so a revocation
is announced to this instance at once and to the others through Redis. A creation answers the
token or the confidential client's secret once; each change is an audit row with the admin as
actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from starlette.routing import Route
from starlette.types import Scope

from llmgw.admin.identity import LocalIdentity
from llmgw.admin.ops import Actor
from llmgw.errors import InvalidRequest
from llmgw.server.pipeline import AdminOperation, AdminRoute
from llmgw.server.routes.admin import PREFIX, _opt_int, _query, _source, require_admin
from llmgw.server.state import Gateway

__all__ = ["admin_oauth_routes"]

_CLIENTS = PREFIX + "/oauth/clients"
_TOKENS = PREFIX + "/tokens"
_MAX_SECONDS = 3660 * 86400.0  # beyond any identity.pat_max_days

Handler = Callable[[LocalIdentity, Mapping[str, str], Mapping[str, str], dict[str, Any]], object]


def _strings(body: Mapping[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    value = body.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"invalid {name}: a list of strings", param=name)
    return value


def _string(body: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise InvalidRequest(f"invalid {name}: a string is required", param=name)
    return value


def _seconds(body: Mapping[str, Any], name: str, *, required: bool) -> timedelta | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value <= _MAX_SECONDS
    ):
        raise InvalidRequest(f"invalid {name}: a number of seconds", param=name)
    return timedelta(seconds=value)


def _flag(q: Mapping[str, str], name: str) -> bool:
    return q.get(name, "false").lower() in ("1", "true", "yes")


class _Identity(AdminOperation):
    """One ``LocalIdentity`` operation, run in a worker thread as the caller."""

    def __init__(self, method: str, path: str, handler: Handler) -> None:
        self.method = method
        self.path = path
        self.handler = handler

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        ident = LocalIdentity(
            g.engine,
            actor,
            _source(scope),
            tokens=lambda: g.tokens,
            default_overlap=timedelta(seconds=g.settings.identity.key_overlap_seconds),
        )
        params = scope.get("path_params", {})
        return await asyncio.to_thread(self.handler, ident, params, _query(scope), body)


def _token_create(
    i: LocalIdentity, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    expires = _seconds(b, "expires_in", required=True)
    assert expires is not None
    return i.tokens_create(
        _string(b, "user"),
        _string(b, "name"),
        expires=expires,
        scope=_string(b, "scope", "chat"),
        rpm=_opt_int(b, "rpm"),
        tpm=_opt_int(b, "tpm"),
    )


def _client_create(
    i: LocalIdentity, p: Mapping[str, str], q: Mapping[str, str], b: dict[str, Any]
) -> object:
    return i.oauth_clients_create(
        _string(b, "name"),
        kind=_string(b, "kind", "public"),
        redirect_uris=_strings(b, "redirect_uris", []),
        grant_types=_strings(b, "grant_types", ["authorization_code", "refresh_token"]),
        scopes=_strings(b, "scopes", ["chat"]),
    )


_OPS: list[tuple[str, str, Handler]] = [
    (
        "GET",
        _TOKENS,
        lambda i, p, q, b: i.tokens_list(user=q.get("user"), include_inactive=_flag(q, "all")),
    ),
    ("POST", _TOKENS, _token_create),
    ("GET", _TOKENS + "/{ref}", lambda i, p, q, b: i.tokens_show(p["ref"])),
    ("POST", _TOKENS + "/{ref}/revoke", lambda i, p, q, b: i.tokens_revoke(p["ref"])),
    (
        "GET",
        _CLIENTS,
        lambda i, p, q, b: i.oauth_clients_list(include_revoked=_flag(q, "all")),
    ),
    ("POST", _CLIENTS, _client_create),
    ("GET", _CLIENTS + "/{client_id}", lambda i, p, q, b: i.oauth_clients_show(p["client_id"])),
    (
        "POST",
        _CLIENTS + "/{client_id}/revoke",
        lambda i, p, q, b: i.oauth_clients_revoke(p["client_id"]),
    ),
    ("GET", PREFIX + "/oauth/keys", lambda i, p, q, b: i.oauth_keys_list()),
    (
        "POST",
        PREFIX + "/oauth/keys/rotate",
        lambda i, p, q, b: i.oauth_keys_rotate(
            overlap=_seconds(b, "overlap_seconds", required=False)
        ),
    ),
]


def admin_oauth_routes(g: Gateway) -> list[Route]:
    """The routes of this module, behind the admin check."""
    ops = [_Identity(method, path, handler) for method, path, handler in _OPS]
    return [Route(op.path, AdminRoute(g, op, require_admin), methods=[op.method]) for op in ops]
