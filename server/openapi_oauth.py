"""The OAuth 2.0 endpoints in the OpenAPI document (tag ``OAuth``) and the admin API's OAuth
clients, signing keys and tokens (tag ``Admin``), so the route table and the document stay equal.

The OAuth endpoints answer RFC 6749 §5.2 bodies (``{"error", "error_description"}``), not the
OpenAI envelope; a client authenticates in the form (``client_id``, ``client_secret``) or with
HTTP Basic, never with an API key, so ``security`` is empty. docs/auth.md describes the flows.
"""

from __future__ import annotations

from typing import Any

from llmgw.server.openapi_admin import _op as _admin_op

__all__ = ["oauth_paths"]

_FORM = "application/x-www-form-urlencoded"
_T = "2026-12-03T07:24:27+00:00"
_ISSUER = "http://127.0.0.1:8080"
_JWT = "eyJhbGciOiJFZERTQSIsImtpZCI6Ims1Iiwi...Zm9v"  # shortened: never a working token
_CLIENT = {
    "client_id": "ci-dashboard",
    "name": "CI dashboard",
    "kind": "confidential",
    "redirect_uris": [],
    "grant_types": ["client_credentials"],
    "scopes": ["usage:self"],
    "created_at": _T,
    "revoked_at": None,
    "status": "active",
}


_TOKEN_RECORD = {
    "jti": "6f1c2a9e0b7d4c3e8f5a1b2c3d4e5f60",
    "kind": "pat",
    "name": "pipeline",
    "user_id": "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d",
    "user": "ci@example.com",
    "client_id": "llmgw-pat",
    "scope": "chat",
    "issued_at": _T,
    "expires_at": "2027-12-03T07:24:27+00:00",
    "revoked_at": None,
    "rpm": 60,
    "tpm": None,
    "status": "active",
}
_KEY_RECORD = {
    "kid": "k5",
    "alg": "EdDSA",
    "created_at": _T,
    "retires_at": None,
    "expires_at": None,
    "state": "signing",
}


def _path_param(name: str, text: str, example: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             "description": text, "example": example}]  # fmt: skip


def _oauth_error(description: str, error: str, text: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["error"]},
                "example": {"error": error, "error_description": text},
            }
        },
    }


def _ok(description: str, example: dict[str, Any], media: str = "application/json") -> Any:
    return {"description": description, "content": {media: {"schema": {"type": "object"}, "example": example}}}  # fmt: skip


def _op(
    op_id: str,
    summary: str,
    description: str,
    responses: dict[str, Any],
    form: dict[str, str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["OAuth"],
        "security": [],
        "responses": responses,
    }
    if form is not None:
        op["requestBody"] = {
            "required": True,
            "content": {_FORM: {"schema": {"type": "object"}, "example": form}},
        }
    return op


_UNAVAILABLE = _oauth_error(
    "The database is down.", "temporarily_unavailable", "database error while issuing a token"
)


def oauth_paths() -> dict[str, Any]:
    """The OAuth endpoints' and the admin OAuth clients' path items."""
    tokens = {
        "access_token": _JWT,
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": "rt_7Hn0kQ...",
        "scope": "chat keys:self",
    }
    admin = "/admin/v1/oauth/clients"
    std = ("401", "403", "429", "503")
    return {
        "/oauth/token": {
            "post": _op(
                "oauthToken",
                "Issue tokens",
                "Grants: `authorization_code` (with the PKCE `code_verifier`), `refresh_token` "
                "(rotated on every use; a reused one revokes its grant), "
                "`urn:ietf:params:oauth:grant-type:device_code` and `client_credentials` "
                "(confidential clients). Answers carry `Cache-Control: no-store`.",
                {
                    "200": _ok(
                        "An access JWT (RFC 9068) and, where granted, a refresh token.", tokens
                    ),
                    "400": _oauth_error(
                        "A bad or used code, a wrong verifier, an unknown grant, a pending device "
                        "code (`authorization_pending`, `slow_down`, `expired_token`, `access_denied`).",
                        "invalid_grant",
                        "the code is invalid, expired or used",
                    ),
                    "401": _oauth_error(
                        "The client failed to authenticate.", "invalid_client", "unknown client"
                    ),
                    "503": _UNAVAILABLE,
                },
                form={
                    "grant_type": "authorization_code",
                    "code": "Sp1xQ0hT...",
                    "redirect_uri": "http://127.0.0.1:49152/callback",
                    "client_id": "llmgw-cli",
                    "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                },
            )
        },
        "/oauth/revoke": {
            "post": _op(
                "oauthRevoke",
                "Revoke a token",
                "RFC 7009: an access or refresh token (a refresh token revokes its grant); 200 "
                "also for an unknown token. Instances refuse it within 1 s.",
                {
                    "200": {"description": "Revoked, or nothing to revoke (empty body)."},
                    "400": _oauth_error("No `token`.", "invalid_request", "token is required"),
                    "401": _oauth_error(
                        "The client failed to authenticate.", "invalid_client", "unknown client"
                    ),
                    "503": _UNAVAILABLE,
                },
                form={"token": "rt_7Hn0kQ...", "client_id": "llmgw-cli"},
            )
        },
        "/oauth/device_authorization": {
            "post": _op(
                "oauthDeviceAuthorization",
                "Start a device login",
                "RFC 8628: a device code to poll `/oauth/token` with, and a user code (8 letters "
                "from a 20-letter alphabet) to enter on `/device`.",
                {
                    "200": _ok(
                        "The codes and where to enter the user code.",
                        {
                            "device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
                            "user_code": "BCDF-GHJK",
                            "verification_uri": f"{_ISSUER}/device",
                            "verification_uri_complete": f"{_ISSUER}/device?user_code=BCDF-GHJK",
                            "expires_in": 600,
                            "interval": 5,
                        },
                    ),
                    "400": _oauth_error(
                        "A scope the client may not ask for.", "invalid_scope", "unknown scope"
                    ),
                    "401": _oauth_error(
                        "The client failed to authenticate.", "invalid_client", "unknown client"
                    ),
                    "503": _UNAVAILABLE,
                },
                form={"client_id": "llmgw-cli", "scope": "chat keys:self"},
            )
        },
        "/.well-known/oauth-authorization-server": {
            "get": _op(
                "oauthMetadata",
                "Authorization server metadata",
                "RFC 8414: the endpoints, grants, PKCE method (S256 only) and scopes.",
                {
                    "200": _ok(
                        "The metadata.",
                        {
                            "issuer": _ISSUER,
                            "authorization_endpoint": f"{_ISSUER}/oauth/authorize",
                            "token_endpoint": f"{_ISSUER}/oauth/token",
                            "revocation_endpoint": f"{_ISSUER}/oauth/revoke",
                            "device_authorization_endpoint": f"{_ISSUER}/oauth/device_authorization",
                            "jwks_uri": f"{_ISSUER}/.well-known/jwks.json",
                            "response_types_supported": ["code"],
                            "code_challenge_methods_supported": ["S256"],
                            "scopes_supported": ["chat", "keys:self", "usage:self", "admin"],
                        },
                    )
                },
            )
        },
        "/.well-known/jwks.json": {
            "get": _op(
                "oauthJwks",
                "Token signing keys",
                "The public keys (Ed25519) that verify access tokens, by `kid`; a rotated key "
                "stays here while tokens it signed are alive.",
                {
                    "200": _ok(
                        "The key set.",
                        {
                            "keys": [
                                {
                                    "kty": "OKP",
                                    "crv": "Ed25519",
                                    "kid": "k5",
                                    "alg": "EdDSA",
                                    "use": "sig",
                                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                                }
                            ]
                        },
                        "application/jwk-set+json",
                    ),  # fmt: skip
                    "503": _UNAVAILABLE,
                },
            )
        },
        admin: {
            "get": _admin_op(
                "adminListOAuthClients",
                "List OAuth clients",
                "Registered clients, oldest first; `all=true` adds revoked ones.",
                {"object": "list", "data": [_CLIENT]},
                errors=std,
                query={"all": ("true", "Include revoked clients.")},
            ),
            "post": _admin_op(
                "adminCreateOAuthClient",
                "Register an OAuth client",
                "A public or confidential client; a confidential one's `client_secret` is in "
                "this answer only.",
                {**_CLIENT, "client_secret": "cs_" + "x" * 40},
                errors=(*std, "400"),
                body={
                    "name": "CI dashboard",
                    "kind": "confidential",
                    "grant_types": ["client_credentials"],
                    "scopes": ["usage:self"],
                },
            ),
        },
        f"{admin}/{{client_id}}": {
            "get": {
                **_admin_op(
                    "adminShowOAuthClient",
                    "Show an OAuth client",
                    "One client, revoked ones too; never its secret.",
                    _CLIENT,
                    errors=(*std, "404"),
                ),
                "parameters": _path_param("client_id", "The client's id.", "ci-dashboard"),
            }
        },
        "/admin/v1/oauth/keys": {
            "get": _admin_op(
                "adminListSigningKeys",
                "List the token signing keys",
                "Newest first: `signing` (the one new tokens get), `verifying` (rotated out, "
                "still trusted until `expires_at`), `expired`. Public facts only.",
                {"object": "list", "data": [_KEY_RECORD]},
                errors=std,
            )
        },
        "/admin/v1/oauth/keys/rotate": {
            "post": _admin_op(
                "adminRotateSigningKey",
                "Rotate the token signing key",
                "A new key signs from now on; older keys verify for `overlap_seconds` (null: "
                "`identity.key_overlap_seconds`), longer while personal tokens they signed live.",
                {**_KEY_RECORD, "kid": "k6"},
                errors=(*std, "400"),
                body={"overlap_seconds": 7200},
            )
        },
        "/admin/v1/tokens": {
            "get": _admin_op(
                "adminListTokens",
                "List issued tokens",
                "Personal and OAuth access tokens, newest first; `user` narrows to one user, "
                "`all=true` adds expired and revoked ones. Never a token itself.",
                {"object": "list", "data": [_TOKEN_RECORD]},
                errors=(*std, "404"),
                query={
                    "user": (
                        "ci@example.com",
                        "Only this user's tokens (email, id, id prefix or name).",
                    ),
                    "all": ("true", "Include expired and revoked tokens."),
                },
            ),
            "post": _admin_op(
                "adminCreateToken",
                "Create a personal access token",
                "A long-lived JWT for a user (CI); `token` is in this answer only. `rpm`/`tpm` "
                "are its own limits (null: `identity.token_rpm`/`token_tpm`).",
                {**_TOKEN_RECORD, "token": _JWT},
                errors=(*std, "400", "404"),
                body={
                    "user": "ci@example.com",
                    "name": "pipeline",
                    "expires_in": 31536000,
                    "scope": "chat",
                    "rpm": 60,
                    "tpm": None,
                },
            ),
        },
        "/admin/v1/tokens/{ref}": {
            "get": {
                **_admin_op(
                    "adminShowToken",
                    "Show a token",
                    "One token by its `jti` or 8+ leading characters of it; never the token.",
                    _TOKEN_RECORD,
                    errors=(*std, "404"),
                ),
                "parameters": _path_param("ref", "The token's jti or a prefix.", "6f1c2a9e0b"),
            }
        },
        "/admin/v1/tokens/{ref}/revoke": {
            "post": {
                **_admin_op(
                    "adminRevokeToken",
                    "Revoke a token",
                    "A personal access token alone, an access token with its whole grant; every "
                    "instance refuses them within 1 s. `revoked` lists the jtis (empty: already).",
                    {"jti": _TOKEN_RECORD["jti"], "revoked": [_TOKEN_RECORD["jti"]]},
                    errors=(*std, "404"),
                ),
                "parameters": _path_param("ref", "The token's jti or a prefix.", "6f1c2a9e0b"),
            }
        },
        f"{admin}/{{client_id}}/revoke": {
            "post": {
                **_admin_op(
                    "adminRevokeOAuthClient",
                    "Revoke an OAuth client",
                    "No new tokens for the client; every token it holds is revoked now.",
                    {**_CLIENT, "revoked_at": _T, "status": "revoked"},
                    errors=(*std, "404"),
                ),
                "parameters": [
                    {
                        "name": "client_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The client's id.",
                        "example": "ci-dashboard",
                    }
                ],  # fmt: skip
            }
        },
    }
