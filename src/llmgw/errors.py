"""The one error tree of llmgw, shared by the CLI, the server and the TUI.

Each class carries what every face needs to show it: a process exit code for the CLI,
an HTTP status and an OpenAI ``error.type`` for the server.

    LlmgwError                    exit 1   500  api_error
    ├── ConfigError               exit 2   500  api_error       bad settings or config file
    ├── UsageError                exit 2   400  invalid_request_error   bad flag or argument value
    ├── InvalidRequest            exit 2   400  invalid_request_error
    │   ├── MethodNotAllowed      exit 2   405  invalid_request_error
    │   ├── RequestTimeout        exit 2   408  invalid_request_error (code request_timeout)
    │   ├── HeadersTooLarge       exit 2   431  invalid_request_error (code headers_too_large)
    │   ├── PayloadTooLarge       exit 2   413  invalid_request_error
    │   ├── InvalidModelName      exit 2   400  invalid_request_error (code invalid_model)
    │   └── ModelNotFound         exit 4   404  invalid_request_error (code model_not_found)
    ├── NotFound                  exit 4   404  not_found_error
    ├── Conflict                  exit 5   409  conflict_error          duplicate email, name...
    ├── AuthError                 exit 6   401  authentication_error
    ├── PermissionDenied          exit 6   403  permission_error
    ├── RateLimited               exit 7   429  rate_limit_error        carries retry_after
    │   └── BudgetExceeded        exit 7   402  insufficient_quota (code budget_exceeded)
    ├── DatabaseError             exit 3   503  api_error (code database_unavailable)
    ├── UpstreamError             exit 8   502  api_error               carries provider
    │   ├── UpstreamTimeout       exit 8   504  api_error
    │   └── UpstreamModelNotFound exit 8   404  invalid_request_error (code model_not_found)
    ├── Unavailable               exit 9   503  api_error               circuit open, draining
    ├── DataCheckFailed           exit 10  500  api_error               a copy or backup failed its check
    └── ClientDisconnected        exit 1   499  api_error               the client hung up (never sent)

Every instance also carries ``retry_after`` (seconds, or None) and ``local`` (the gateway's own
cap refused the call, not the upstream); a status belongs to a class, never to one instance.

Messages never contain secrets: callers pass only names and prefixes.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BudgetExceeded",
    "ClientDisconnected",
    "ConfigError",
    "Conflict",
    "DataCheckFailed",
    "DatabaseError",
    "HeadersTooLarge",
    "InvalidModelName",
    "InvalidRequest",
    "LlmgwError",
    "MethodNotAllowed",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "Unavailable",
    "UpstreamError",
    "UpstreamModelNotFound",
    "UpstreamTimeout",
    "UsageError",
]


class LlmgwError(Exception):
    """Root of every error llmgw shows to a person or a client."""

    exit_code: int = 1
    http_status: int = 500
    error_type: str = "api_error"
    code: str | None = None
    retry_after: float | None = None
    """Seconds until a retry may succeed (429s, open circuits), sent as ``Retry-After``."""
    local: bool = False
    """True when the gateway's own per-upstream cap refused the call (the upstream is not at fault)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param
        if code is not None:
            self.code = code

    def to_openai(self) -> dict[str, object]:
        """The OpenAI error envelope for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(LlmgwError):
    """The settings or the config file are invalid."""

    exit_code = 2


class UsageError(LlmgwError):
    """A command-line argument has a bad value (a duration, a number, a list)."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


class InvalidRequest(LlmgwError):
    """A client request is malformed or fails validation."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"


class MethodNotAllowed(InvalidRequest):
    """The endpoint exists but not for this HTTP method."""

    http_status = 405


class RequestTimeout(InvalidRequest):
    """The request's headers or body did not arrive in time (a slow client)."""

    http_status = 408
    code = "request_timeout"


class HeadersTooLarge(InvalidRequest):
    """The request head is over ``server.max_header_bytes`` or ``server.max_headers``."""

    http_status = 431
    code = "headers_too_large"


class PayloadTooLarge(InvalidRequest):
    """The request body is over the configured limit."""

    http_status = 413
    code = "payload_too_large"


class InvalidModelName(InvalidRequest):
    """A request's ``model`` is outside the grammar ``[provider/]model[:version]``."""

    code = "invalid_model"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "model must be [provider/]model[:version]: ASCII letters, digits and . _ - : / @ +, "
            "the model at most 200 characters and the version at most 64",
            param="model",
            hint="GET /v1/models lists the configured models",
        )


class ModelNotFound(InvalidRequest):
    """The requested model or alias is not configured."""

    exit_code = 4
    http_status = 404
    code = "model_not_found"


class NotFound(LlmgwError):
    """A named object (key, user, alert) does not exist."""

    exit_code = 4
    http_status = 404
    error_type = "not_found_error"


class Conflict(LlmgwError):
    """The object already exists or is in a state that forbids the change."""

    exit_code = 5
    http_status = 409
    error_type = "conflict_error"


class AuthError(LlmgwError):
    """Missing, malformed, unknown, expired or revoked credentials."""

    exit_code = 6
    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(LlmgwError):
    """The credentials are valid but do not allow this (a model outside the allow-list)."""

    exit_code = 6
    http_status = 403
    error_type = "permission_error"
    code = "model_not_allowed"


class RateLimited(LlmgwError):
    """A limit was hit; ``retry_after`` says when to come back, in seconds."""

    exit_code = 7
    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        local: bool = False,
        **kw: str | None,
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.local = local
        self.headers: dict[str, str] = {}
        """Extra response headers (a key's ``x-ratelimit-*`` state) for the 429."""


class BudgetExceeded(RateLimited):
    """A budget with a hard stop is spent; ``retry_after`` runs to the start of its next period."""

    http_status = 402
    error_type = "insufficient_quota"
    code = "budget_exceeded"


class DatabaseError(LlmgwError):
    """The database is unreachable or refused an operation."""

    exit_code = 3
    http_status = 503
    code = "database_unavailable"


class DataCheckFailed(LlmgwError):
    """Data failed a check: a migrated table differs from its source, a source value matches no
    conversion rule, or a backup or database fails its integrity check."""

    exit_code = 10


class UpstreamError(LlmgwError):
    """The upstream provider failed or answered with something unusable."""

    exit_code = 8
    http_status = 502
    code = "upstream_error"

    def __init__(self, message: str, *, provider: str | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.provider = provider


class UpstreamTimeout(UpstreamError):
    """The upstream provider did not answer in time."""

    http_status = 504
    code = "upstream_timeout"


class UpstreamModelNotFound(UpstreamError):
    """The upstream answered 404: it does not serve this model (or operation).

    An upstream failure for the router (the next candidate of an alias is tried, the breaker is not
    charged, the same candidate is not retried), and a truthful 404 ``model_not_found`` for the
    client when no candidate served the request (docs/routing.md, "Upstream errors").
    """

    http_status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class Unavailable(LlmgwError):
    """The gateway cannot serve this now (circuit open, draining, spool full)."""

    exit_code = 9
    http_status = 503
    code = "unavailable"


class ClientDisconnected(LlmgwError):
    """The client went away before the answer was ready (status 499, recorded but never sent)."""

    http_status = 499
    code = "client_disconnected"
