"""OAuth 2.0 errors (RFC 6749 §5.2, RFC 8628 §3.5, RFC 7009 §2.2.1) in llmgw's error tree.

Each carries its RFC ``error`` code; the OAuth endpoints answer ``to_oauth()`` (not the OpenAI
envelope), the CLI shows them as any ``LlmgwError``.
"""

from __future__ import annotations

from llmgw.errors import InvalidRequest

__all__ = [
    "AccessDenied",
    "AuthorizationPending",
    "ExpiredToken",
    "InvalidClient",
    "InvalidGrant",
    "InvalidScope",
    "OAuthError",
    "SlowDown",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedTokenType",
]


class OAuthError(InvalidRequest):
    """An OAuth error; ``code`` is the RFC's ``error`` value."""

    code: str = "invalid_request"

    def to_oauth(self) -> dict[str, str]:
        """The RFC 6749 §5.2 error body."""
        return {"error": self.code or "invalid_request", "error_description": self.message}


class InvalidGrant(OAuthError):
    """A code, refresh token or device code that is unknown, used, expired or not this client's."""

    code = "invalid_grant"


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, bad secret, revoked client)."""

    http_status = 401
    exit_code = 6
    code = "invalid_client"


class InvalidScope(OAuthError):
    """A scope that does not exist, or wider than the client or grant allows."""

    code = "invalid_scope"


class UnauthorizedClient(OAuthError):
    """The client is not registered for this grant type."""

    code = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """A grant type llmgw does not implement (``password``, ``implicit``...)."""

    code = "unsupported_grant_type"


class UnsupportedTokenType(OAuthError):
    """RFC 7009: the server cannot revoke this kind of token."""

    code = "unsupported_token_type"


class AuthorizationPending(OAuthError):
    """RFC 8628: the user has not yet approved the device."""

    code = "authorization_pending"


class SlowDown(OAuthError):
    """RFC 8628: polling too fast; the interval grew by 5 s."""

    code = "slow_down"


class AccessDenied(OAuthError):
    """RFC 8628: the user denied the device."""

    code = "access_denied"


class ExpiredToken(OAuthError):
    """RFC 8628: the device code expired before approval."""

    code = "expired_token"
