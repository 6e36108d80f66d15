"""An upstream access token cached in memory, refreshed ahead of expiry with a single flight."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from llmgw.errors import UpstreamError, UpstreamTimeout

__all__ = ["AccessToken", "TokenCache", "expires_at_seconds", "token_endpoint_error"]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and when it stops working (unix seconds)."""

    value: str
    expires_at: float

    def __repr__(self) -> str:  # never show the token itself
        return f"AccessToken(expires_at={self.expires_at:.0f})"


def expires_at_seconds(value: float) -> float:
    """An ``expires_at`` read as milliseconds, tolerating seconds (values below 10**12)."""
    return value / 1000 if value >= 10**12 else float(value)


class TokenCache:
    """One credential's token: fetched once, shared, refreshed when less than ``margin`` s remain.

    Every waiter during a refresh shares the one fetch (single flight). ``refresh(stale)`` after a 401
    fetches again only if no one else has replaced ``stale`` yet, so a burst of 401s costs one fetch.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[AccessToken]],
        *,
        margin: float = 60.0,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._max_age = max_age
        self._clock = clock
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self._attempts = 0
        self._last_error: Exception | None = None
        self.fetches = 0
        """How many tokens were fetched (for tests and ``providers status``)."""

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token.value
        return None

    async def get(self) -> str:
        """A usable token, fetching one if there is none or it is about to expire."""
        value = self._fresh()
        if value is not None:
            return value
        attempt = self._attempts
        async with self._lock:
            value = self._fresh()
            if value is not None:
                return value
            self._share_failure(attempt)
            return await self._renew()

    async def refresh(self, stale: str) -> str:
        """A new token after ``stale`` was rejected (fetches unless another caller already did)."""
        attempt = self._attempts
        async with self._lock:
            if self._token is not None and self._token.value != stale and self._fresh() is not None:
                return self._token.value
            self._share_failure(attempt)
            return await self._renew()

    def _share_failure(self, attempt: int) -> None:
        """Waiters of a fetch that failed get its error instead of each trying again (single flight)."""
        if self._attempts != attempt and self._last_error is not None:
            raise self._last_error

    async def _renew(self) -> str:
        try:
            token = await self._fetch()
        except Exception as exc:
            self._last_error = exc
            raise
        finally:
            self._attempts += 1  # counted when done: callers that waited on it see the change
        self._last_error = None
        self.fetches += 1
        now = self._clock()
        lifetime = max(0.0, token.expires_at - now)
        # Refresh ``margin`` seconds early, but never spend more than half a short lifetime waiting.
        refresh_at = token.expires_at - min(self._margin, lifetime / 2)
        if self._max_age is not None:
            refresh_at = min(refresh_at, now + self._max_age)
        self._token, self._refresh_at = token, refresh_at
        return token.value


def token_endpoint_error(exc: httpx.HTTPError, what: str, provider: str) -> UpstreamError:
    """A failed token request (httpx) as a sanitized upstream error; TLS failures name ca_bundle."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"timed out getting a {what} access token", provider=provider)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return UpstreamError(
                f"the TLS certificate of the {what} token endpoint could not be verified",
                provider=provider,
                hint="set ca_bundle to a PEM file with the issuing root CA (GigaChat: Russian Trusted Root CA)",
            )
        cause = cause.__cause__ or cause.__context__
    return UpstreamError(
        f"cannot reach the {what} token endpoint ({type(exc).__name__})", provider=provider
    )
