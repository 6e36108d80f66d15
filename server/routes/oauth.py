"""The OAuth 2.0 endpoints without pages: token, revocation, device authorization, metadata, keys.

``POST /oauth/token`` (RFC 6749 §3.2, §4.1.3, §4.4, §6; RFC 8628 §3.4), ``POST /oauth/revoke``
(RFC 7009), ``POST /oauth/device_authorization`` (RFC 8628 §3.1),
``GET /.well-known/oauth-authorization-server`` (RFC 8414) and ``GET /.well-known/jwks.json``.
Bodies are ``application/x-www-form-urlencoded``; a parameter sent twice is ``invalid_request``.
Clients authenticate with HTTP Basic or ``client_id``/``client_secret`` in the body; a public
client sends only ``client_id``. These are OAuth endpoints: their errors are RFC 6749 §5.2
bodies (``{"error", "error_description"}``), not the OpenAI envelope, and every answer carries
``Cache-Control: no-store``. The services are ``llmgw.identity``; database work runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmgw.admin.audit import AuditService
from llmgw.admin.ops import Actor
from llmgw.errors import DatabaseError, LlmgwError
from llmgw.identity import codes, device
from llmgw.identity.clients import DEVICE_GRANT, GRANT_TYPES, ClientInfo, ClientService
from llmgw.identity.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from llmgw.identity.scopes import SCOPES, format_scope, grantable, parse_scope
from llmgw.identity.tokens import GrantRevoked, IssuedTokens
from llmgw.server.state import Gateway
from llmgw.storage.tables import User

__all__ = ["oauth_routes"]

log = logging.getLogger("llmgw.server")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM = 16 * 1024
_USERS = User.__table__  # type: ignore[attr-defined]
_FORM = "application/x-www-form-urlencoded"


class _Form(dict[str, str]):
    """The request's parameters, and whether the client authenticated with HTTP Basic."""

    basic = False


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def _oauth_error(exc: OAuthError, basic: bool) -> Response:
    headers = (
        {"WWW-Authenticate": 'Basic realm="llmgw"'} if exc.http_status == 401 and basic else {}
    )
    return _json(exc.to_oauth(), exc.http_status, headers)


async def _form(request: Request) -> _Form:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != _FORM:
        raise OAuthError(f"the body must be {_FORM}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise OAuthError("the request body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("the body is not a valid form") from None
    form = _Form()
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.1, §3.2: no parameter more than once
            raise OAuthError(f"parameter {name[:40]!r} is repeated")
        if value != "":  # an empty parameter counts as absent (§3.1)
            form[name] = value
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClient("unsupported client authentication scheme; use Basic")
        try:
            text = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient("malformed Basic credentials") from None
        cid, sep, secret = text.partition(":")
        if not sep or "client_secret" in form or form.get("client_id", cid) != unquote_plus(cid):
            raise InvalidClient("send client credentials one way only")
        form["client_id"] = unquote_plus(cid)
        form["client_secret"] = unquote_plus(secret)
        form.basic = True
    return form


class OAuthEndpoints:
    """The handlers; ``g`` holds the engine, the token service and the metrics."""

    def __init__(self, g: Gateway) -> None:
        self.g = g

    # -- helpers -----------------------------------------------------------------------------
    @property
    def clients(self) -> ClientService:
        return ClientService(self.g.engine)

    def _client(self, form: _Form, grant: str | None) -> ClientInfo:
        client = self.clients.authenticate(form.get("client_id"), form.get("client_secret"))
        if grant is not None and grant not in client.grant_types:
            raise UnauthorizedClient(f"this client may not use the {grant} grant")
        return client

    def _user(self, user_id: uuid.UUID) -> tuple[str, str]:
        """The user's email and role; ``InvalidGrant`` when the user is gone or disabled."""
        import sqlalchemy as sa

        with self.g.engine.connect() as conn:
            row: Any = conn.execute(
                sa.select(_USERS.c.email, _USERS.c.role, _USERS.c.disabled).where(
                    _USERS.c.id == user_id
                )
            ).first()
        if row is None or row.disabled:
            raise InvalidGrant("the user is disabled")
        return row.email, row.role

    def _audit(
        self,
        request: Request,
        actor: str,
        action: str,
        target: str | None,
        detail: dict[str, Any],
    ) -> None:
        client = request.client
        who = Actor(
            name=actor, kind="token", role="user", remote_addr=client.host if client else None
        )
        try:
            AuditService(self.g.engine).record(who, action, target, source="api", detail=detail)
        except DatabaseError as exc:  # the grant stands; the failure is logged, not hidden
            log.warning("could not write the audit log for %s: %s", action, exc.message)

    async def _run(
        self,
        endpoint: str,
        request: Request,
        work: Callable[[_Form], Response],
    ) -> Response:
        basic = False
        try:
            form = await _form(request)
            basic = form.basic
            return await asyncio.to_thread(work, form)
        except OAuthError as exc:
            self.g.metrics.oauth_failures.labels(endpoint, exc.code or "invalid_request").inc()
            return _oauth_error(exc, basic)
        except LlmgwError as exc:  # a database outage: 503, RFC 7009 §2.2.1 says retry later
            self.g.metrics.oauth_failures.labels(endpoint, "server_error").inc()
            status = 503 if isinstance(exc, DatabaseError) else exc.http_status
            code = "temporarily_unavailable" if status == 503 else "invalid_request"
            return _json({"error": code, "error_description": exc.message}, status)

    # -- POST /oauth/token -------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        return await self._run("token", request, lambda form: self._token(request, form))

    def _token(self, request: Request, form: _Form) -> Response:
        grant = form.get("grant_type")
        if grant is None:
            raise OAuthError("grant_type is required", param="grant_type")
        if grant not in GRANT_TYPES:
            raise UnsupportedGrantType(f"grant type {grant[:60]!r} is not supported")
        client = self._client(form, grant)
        handler: dict[str, Callable[[Request, _Form, ClientInfo], IssuedTokens]] = {
            "authorization_code": self._authorization_code,
            "refresh_token": self._refresh,
            DEVICE_GRANT: self._device_code,
            "client_credentials": self._client_credentials,
        }
        issued = handler[grant](request, form, client)
        self.g.metrics.oauth_issued.labels(grant).inc()
        return _json(issued.as_response())

    def _for_user(
        self,
        request: Request,
        client: ClientInfo,
        user_id: uuid.UUID,
        scope: str,
        family: uuid.UUID | None,
        grant: str,
    ) -> IssuedTokens:
        email, role = self._user(user_id)
        granted = grantable(parse_scope(scope), client.scopes, role)
        if not granted:
            raise InvalidScope("none of the requested scopes can be granted")
        issued = self.g.tokens.issue(
            client_id=client.client_id,
            user_id=user_id,
            scope=format_scope(granted),
            family_id=family,
            refresh="refresh_token" in client.grant_types,
        )
        self._audit(
            request,
            email,
            "oauth.grant",
            email,
            {
                "client_id": client.client_id,
                "grant": grant,
                "scope": issued.scope,
                "jti": issued.jti,
            },
        )
        return issued

    def _authorization_code(
        self, request: Request, form: _Form, client: ClientInfo
    ) -> IssuedTokens:
        code = form.get("code")
        if code is None:
            raise OAuthError("code is required", param="code")
        try:
            grant = codes.redeem_code(
                self.g.engine,
                code,
                client_id=client.client_id,
                redirect_uri=form.get("redirect_uri"),
                code_verifier=form.get("code_verifier"),
            )
        except codes.CodeReused as exc:  # RFC 6749 §4.1.2: revoke what the first use issued
            revoked = self.g.tokens.revoke_family(exc.family_id)
            if revoked:
                self.g.metrics.oauth_revocations.labels("code_reuse").inc(len(revoked))
                self._audit(
                    request,
                    client.client_id,
                    "oauth.revoke",
                    client.client_id,
                    {"cause": "code_reuse", "jtis": revoked},
                )
            raise
        return self._for_user(
            request, client, grant.user_id, grant.scope, grant.family_id, "authorization_code"
        )

    def _refresh(self, request: Request, form: _Form, client: ClientInfo) -> IssuedTokens:
        token = form.get("refresh_token")
        if token is None:
            raise OAuthError("refresh_token is required", param="refresh_token")
        try:
            issued = self.g.tokens.refresh(
                token, client_id=client.client_id, scope=form.get("scope")
            )
        except GrantRevoked as exc:  # RFC 9700 §4.14.2: a spent token again, the grant is gone
            self.g.metrics.oauth_revocations.labels("refresh_reuse").inc(max(len(exc.revoked), 1))
            self._audit(
                request,
                client.client_id,
                "oauth.revoke",
                client.client_id,
                {"cause": "refresh_reuse", "jtis": exc.revoked},
            )
            raise
        self.g.metrics.oauth_refreshes.inc()
        self._audit(
            request,
            client.client_id,
            "oauth.refresh",
            client.client_id,
            {"client_id": client.client_id, "scope": issued.scope, "jti": issued.jti},
        )
        return issued

    def _device_code(self, request: Request, form: _Form, client: ClientInfo) -> IssuedTokens:
        code = form.get("device_code")
        if code is None:
            raise OAuthError("device_code is required", param="device_code")
        approved = device.poll(self.g.engine, code, client_id=client.client_id)
        return self._for_user(request, client, approved.user_id, approved.scope, None, DEVICE_GRANT)

    def _client_credentials(
        self, request: Request, form: _Form, client: ClientInfo
    ) -> IssuedTokens:
        if client.is_public:
            raise UnauthorizedClient("client_credentials needs a confidential client")
        granted = grantable(parse_scope(form.get("scope")), client.scopes, None)
        if not granted or (form.get("scope") and granted != parse_scope(form.get("scope"))):
            raise InvalidScope("the client may not have that scope")
        issued = self.g.tokens.issue(
            client_id=client.client_id, user_id=None, scope=format_scope(granted), refresh=False
        )
        self._audit(
            request,
            client.client_id,
            "oauth.grant",
            client.client_id,
            {"grant": "client_credentials", "scope": issued.scope, "jti": issued.jti},
        )
        return issued

    # -- POST /oauth/revoke ------------------------------------------------------------------
    async def revoke(self, request: Request) -> Response:
        return await self._run("revoke", request, lambda form: self._revoke(request, form))

    def _revoke(self, request: Request, form: _Form) -> Response:
        client = self._client(form, None)
        token = form.get("token")
        if token is None:
            raise OAuthError("token is required", param="token")
        # token_type_hint is only a hint (RFC 7009 §2.1): every kind is tried, a bogus one ignored
        revoked = self.g.tokens.revoke(token, client_id=client.client_id)
        if revoked:
            self.g.metrics.oauth_revocations.labels("revoke_endpoint").inc(len(revoked))
            self._audit(
                request,
                client.client_id,
                "oauth.revoke",
                client.client_id,
                {"cause": "revoke_endpoint", "jtis": revoked},
            )
        return Response(b"", status_code=200, headers=_NO_STORE)

    # -- POST /oauth/device_authorization ----------------------------------------------------
    async def device_authorization(self, request: Request) -> Response:
        return await self._run("device_authorization", request, self._device_authorization)

    def _device_authorization(self, form: _Form) -> Response:
        client = self._client(form, DEVICE_GRANT)
        requested = parse_scope(form.get("scope"))
        if not requested <= set(client.scopes):
            raise InvalidScope("the client may not ask for that scope")
        scope = format_scope(requested or client.scopes)
        grant = device.start(
            self.g.engine, client.client_id, scope, base_url=self.g.settings.issuer
        )
        return _json(
            {
                "device_code": grant.device_code,
                "user_code": grant.user_code,
                "verification_uri": grant.verification_uri,
                "verification_uri_complete": grant.verification_uri_complete,
                "expires_in": grant.expires_in,
                "interval": grant.interval,
            }
        )

    # -- discovery ---------------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        base = self.g.settings.issuer
        auth_methods = ["none", "client_secret_basic", "client_secret_post"]
        return _json(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "device_authorization_endpoint": f"{base}/oauth/device_authorization",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": list(GRANT_TYPES),
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": auth_methods,
                "revocation_endpoint_auth_methods_supported": auth_methods,
                "scopes_supported": list(SCOPES),
            }
        )

    async def jwks(self, request: Request) -> Response:
        def keys() -> dict[str, Any]:
            self.g.tokens.keys.signer()  # a first key exists once anyone asks
            return self.g.tokens.keys.jwks()

        try:
            body = await asyncio.to_thread(keys)
        except DatabaseError as exc:
            return _json(
                {"error": "temporarily_unavailable", "error_description": exc.message}, 503
            )
        return Response(
            orjson.dumps(body),
            media_type="application/jwk-set+json",
            headers={"Cache-Control": "public, max-age=60"},
        )


def oauth_routes(g: Gateway) -> list[Route]:
    """The routes of this module (the pages, ``/oauth/authorize`` and ``/device``, are idweb's)."""
    ep = OAuthEndpoints(g)
    handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], str]] = [
        ("/oauth/token", ep.token, "POST"),
        ("/oauth/revoke", ep.revoke, "POST"),
        ("/oauth/device_authorization", ep.device_authorization, "POST"),
        ("/.well-known/oauth-authorization-server", ep.metadata, "GET"),
        ("/.well-known/jwks.json", ep.jwks, "GET"),
    ]
    return [Route(path, fn, methods=[method]) for path, fn, method in handlers]
