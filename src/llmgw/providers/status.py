"""One mapping of an upstream's error answer onto the error tree, and one ``Retry-After`` parser.

Every adapter reads its own error body (OpenAI's ``{"error": {...}}``, GigaChat's
``{"status", "message"}``, YandexGPT's ``{"error": {"grpcCode", ...}}``) into a redacted message
and then asks ``upstream_error`` for the gateway error, so one upstream status means one thing
whichever provider sent it (the table is in docs/routing.md, "Upstream errors"):

    400, 422, other 4xx  -> InvalidRequest (400)        the client's request; no fallback
    401, 402, 403        -> UpstreamError (502)         the gateway's credential or account; fallback
    404                  -> UpstreamModelNotFound (404) this provider lacks the model; fallback
    408, 504             -> UpstreamTimeout (504)       fallback, not retried
    413                  -> PayloadTooLarge (413)       no fallback
    429                  -> RateLimited (429)           Retry-After kept; fallback
    5xx, anything else   -> UpstreamError (502)         fallback
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from llmgw.errors import (
    InvalidRequest,
    LlmgwError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamTimeout,
)

__all__ = ["MAX_RETRY_AFTER", "retry_after", "upstream_error"]

MAX_RETRY_AFTER = 86_400.0
"""Longer waits are read as a day: a bogus header must not park a client or a retry for ever."""


def retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait from ``Retry-After`` (RFC 9110 §10.2.3), else ``None``.

    The value is either delta-seconds (digits only: ``120``) or an HTTP-date
    (``Sun, 06 Nov 1994 08:49:37 GMT``, also the obsolete RFC 850 and asctime forms, read as GMT);
    a date in the past is 0. OpenAI-style ``retry-after-ms`` wins when present. Anything else
    (``1.5``, ``-3``, ``inf``, ``soon``) is no answer, not a guess.
    """
    ms = (headers.get("retry-after-ms") or "").strip()
    if ms:
        try:
            value = float(ms)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return min(value / 1000, MAX_RETRY_AFTER)
    raw = (headers.get("Retry-After") or headers.get("retry-after") or "").strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        return min(float(int(raw)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime carries no zone; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now()), MAX_RETRY_AFTER)


def upstream_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    *,
    message: str | None = None,
    param: str | None = None,
    model: str | None = None,
    retry_default: float | None = None,
    hint: str | None = None,
) -> LlmgwError:
    """The gateway error for an upstream's non-2xx ``status``.

    ``message`` is the upstream's own text, already redacted by the adapter (it is shown to the
    client only for the client's own mistakes, 400/422); ``model`` names the model in a 404;
    ``retry_default`` is the wait for a 429 that carries no ``Retry-After`` (adapters whose limit is
    a concurrency gauge pass 1 s; ``None`` when the limit is a quota over time).
    """
    p = provider
    if status in (401, 403):
        return UpstreamError(
            f"upstream {p} rejected the gateway's credentials (HTTP {status})",
            provider=p,
            hint=hint or f"check the credential configured for provider {p!r}",
        )
    if status == 402:
        return UpstreamError(
            f"upstream {p} refused the call: payment required (HTTP 402)",
            provider=p,
            hint=hint or f"check the account behind provider {p!r}",
        )
    if status == 429:
        wait = retry_after(headers)
        return RateLimited(
            f"upstream {p} is rate limiting requests"
            + (f": {message}" if message else "; try again later"),
            retry_after=wait if wait is not None else retry_default,
        )
    if status == 404:
        what = f"model {model!r}" if model else "this endpoint"
        return UpstreamModelNotFound(
            f"upstream {p} does not serve {what} (HTTP 404)", provider=p, param="model"
        )
    if status == 413:
        return PayloadTooLarge(f"upstream {p} refused the request as too large")
    if status in (408, 504):
        return UpstreamTimeout(f"upstream {p} timed out (HTTP {status})", provider=p)
    if 400 <= status < 500:
        text = f"upstream {p} rejected the request" + (f": {message}" if message else "")
        return InvalidRequest(text, param=param)
    return UpstreamError(f"upstream {p} failed (HTTP {status})", provider=p, hint=hint)
