"""``/admin/v1/oauth/clients``: OAuth clients in the admin API (list, register, revoke).

The same ``AdminOperation`` pipeline as the rest of ``/admin/v1`` (``require_admin``: an admin
key or an admin-scoped token of an admin user). A registration answers the confidential client's
secret once (``client_secret``); a revocation also revokes every token the client holds and
announces them to every instance. Each change is an audit row with the admin as actor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import Route
from starlette.types import Scope

from llmgw.admin.audit import AuditService
from llmgw.admin.ops import Actor
from llmgw.errors import InvalidRequest
from llmgw.identity.clients import ClientService
from llmgw.identity.records import client_record
from llmgw.server.pipeline import AdminOperation, AdminRoute
from llmgw.server.routes.admin import PREFIX, _query, _source, require_admin
from llmgw.server.state import Gateway

__all__ = ["admin_oauth_routes"]

_PATH = PREFIX + "/oauth/clients"


def _strings(body: dict[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    value = body.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"invalid {name}: a list of strings", param=name)
    return value


class _List(AdminOperation):
    """``GET``: the clients (``?all=true`` includes revoked ones)."""

    path = _PATH

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        every = _query(scope).get("all", "false").lower() in ("1", "true", "yes")
        clients = await asyncio.to_thread(ClientService(g.engine).list, include_revoked=every)
        return [client_record(c) for c in clients]


class _Create(AdminOperation):
    """``POST``: register a client; a confidential one's ``client_secret`` is in the answer once."""

    method = "POST"
    path = _PATH

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        name, kind = body.get("name"), body.get("kind", "public")
        if not isinstance(name, str) or not isinstance(kind, str):
            raise InvalidRequest("name and kind must be strings", param="name")
        uris = _strings(body, "redirect_uris", [])
        grants = _strings(body, "grant_types", ["authorization_code", "refresh_token"])
        scopes = _strings(body, "scopes", ["chat"])
        source = _source(scope)

        def create() -> dict[str, Any]:
            info, secret = ClientService(g.engine).create(name, kind, uris, grants, scopes)
            AuditService(g.engine).record(
                actor, "oauth.clients.create", info.client_id, source=source,
                detail={"name": info.name, "kind": info.kind},
            )  # fmt: skip
            return {**client_record(info), "client_secret": secret}

        return await asyncio.to_thread(create)


class _Revoke(AdminOperation):
    """``POST .../{client_id}/revoke``: no new tokens for the client, its tokens revoked now."""

    method = "POST"
    path = _PATH + "/{client_id}/revoke"

    async def run(self, g: Gateway, actor: Actor, scope: Scope, body: dict[str, Any]) -> object:
        client_id = str(scope["path_params"]["client_id"])
        source = _source(scope)

        def revoke() -> dict[str, Any]:
            clients = ClientService(g.engine)
            clients.get(client_id)  # NotFound first
            info = clients.revoke(client_id)
            revoked = g.tokens.revoke_client(client_id)
            AuditService(g.engine).record(
                actor, "oauth.clients.revoke", client_id, source=source,
                detail={"tokens_revoked": len(revoked)},
            )  # fmt: skip
            return {**client_record(info), "tokens_revoked": len(revoked)}

        return await asyncio.to_thread(revoke)


def admin_oauth_routes(g: Gateway) -> list[Route]:
    """The routes of this module, behind the admin check."""
    ops: list[AdminOperation] = [_List(), _Create(), _Revoke()]
    return [Route(op.path, AdminRoute(g, op, require_admin), methods=[op.method]) for op in ops]
