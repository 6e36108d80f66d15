"""The OAuth 2.0 client side of ``llmgw login``: PKCE, the token endpoint, the device flow.

``llmgw login`` is a public native client (RFC 8252) named ``llmgw-cli``. What it speaks:

- discovery: RFC 8414 metadata at ``/.well-known/oauth-authorization-server`` (the endpoint
  paths of llmgw serve are used when a server has none);
- authorization code + PKCE S256 only (RFC 7636): a 43-character verifier from 32 random bytes,
  never ``plain`` (no fallback, §7.2); the redirect comes to a loopback listener
  (``cli/loopback.py``);
- the device authorization grant (RFC 8628): polls no faster than ``interval``, adds 5 s on every
  ``slow_down``, stops on ``access_denied``, ``expired_token`` or after ``expires_in``;
- refresh with rotation (RFC 6749 §6, RFC 9700 §4.14.2): every refresh returns a new refresh
  token, which the caller must store before using the access token;
- revocation (RFC 7009) for ``llmgw logout``.

Every call has a timeout and every wait is bounded; no token is ever put in a message.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from llmgw import __version__
from llmgw.errors import AuthError, LlmgwError, Unavailable, UpstreamError, UsageError

__all__ = [
    "CLIENT_ID",
    "DeviceGrant",
    "Endpoints",
    "OAuthClient",
    "OAuthError",
    "TokenSet",
    "challenge_of",
    "make_state",
    "make_verifier",
]

CLIENT_ID = "llmgw-cli"
"""The built-in public client every llmgw server registers for ``llmgw login``."""

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""Each call to the authorization server: 5 s to connect, 30 s per read."""

SLOW_DOWN_STEP = 5.0
"""RFC 8628 §3.5: seconds added to the polling interval on every ``slow_down``."""


def make_verifier() -> str:
    """A PKCE code verifier: 32 random bytes, base64url without padding (43 characters of the
    unreserved set, RFC 7636 §4.1)."""
    return secrets.token_urlsafe(32)


def challenge_of(verifier: str) -> str:
    """The S256 code challenge: ``BASE64URL(SHA256(ASCII(verifier)))`` without padding (§4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_state() -> str:
    """An unguessable ``state`` value that ties the redirect to this login (RFC 6749 §10.12)."""
    return secrets.token_urlsafe(24)


class OAuthError(AuthError):
    """The authorization server answered an OAuth error (``error`` is its code)."""

    def __init__(self, error: str, description: str | None, *, hint: str | None = None) -> None:
        text = f"the server refused: {error}"
        if description:
            text += f" ({_printable(description)[:200]})"
        super().__init__(text, hint=hint)
        self.error = error


def _printable(text: str) -> str:
    """``text`` with control characters dropped (a server's words go to a terminal)."""
    return "".join(ch for ch in text if ch.isprintable())


@dataclass(frozen=True)
class Endpoints:
    """Where the authorization server's endpoints are (RFC 8414 metadata, or llmgw's paths)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    device_authorization_endpoint: str

    @classmethod
    def default(cls, url: str) -> Endpoints:
        """llmgw serve's own paths under ``url``."""
        return cls(
            issuer=url,
            authorization_endpoint=f"{url}/oauth/authorize",
            token_endpoint=f"{url}/oauth/token",
            revocation_endpoint=f"{url}/oauth/revoke",
            device_authorization_endpoint=f"{url}/oauth/device_authorization",
        )


@dataclass(frozen=True)
class TokenSet:
    """What a successful token response gave (RFC 6749 §5.1)."""

    access_token: str
    refresh_token: str | None
    expires_at: float
    """Unix time the access token expires (``expires_in`` added to the time it was asked for)."""
    scope: str

    def __repr__(self) -> str:  # tokens stay out of logs and tracebacks
        return f"TokenSet(expires_at={self.expires_at!r}, scope={self.scope!r})"


@dataclass(frozen=True)
class DeviceGrant:
    """The answer of the device authorization endpoint (RFC 8628 §3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __repr__(self) -> str:  # the device code is a bearer secret until used
        return f"DeviceGrant(user_code={self.user_code!r}, expires_in={self.expires_in!r})"


class OAuthClient:
    """The public client ``client_id`` talking to the authorization server at ``url``.

    ``http`` is an ``httpx.Client`` the caller owns (tests pass one on an ASGI app or a real
    server); ``clock`` and ``sleep`` are injected so the device flow's waits can be tested
    without waiting.
    """

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        *,
        client_id: str = CLIENT_ID,
        endpoints: Endpoints | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self._http = http
        self._endpoints = endpoints
        self._clock = clock
        self._sleep = sleep

    # -- discovery ------------------------------------------------------------------------
    @property
    def endpoints(self) -> Endpoints:
        """The endpoints, from the server's RFC 8414 metadata on first use."""
        if self._endpoints is None:
            self._endpoints = self._discover()
        return self._endpoints

    def _discover(self) -> Endpoints:
        default = Endpoints.default(self.url)
        resp = self._send("GET", f"{self.url}/.well-known/oauth-authorization-server")
        if resp.status_code == 404:
            return default
        data = self._json(resp)
        if not resp.is_success or not isinstance(data, dict):
            raise UpstreamError(
                f"the server at {self.url} answered HTTP {resp.status_code} for its OAuth metadata"
            )
        if "S256" not in (data.get("code_challenge_methods_supported") or ["S256"]):
            raise UpstreamError(
                f"the server at {self.url} does not support PKCE S256",
                hint="llmgw login uses S256 only (RFC 7636 §7.2: no fallback to plain)",
            )

        def pick(name: str, fallback: str) -> str:
            value = data.get(name)
            return (
                value
                if isinstance(value, str) and value.startswith(("http://", "https://"))
                else fallback
            )

        return Endpoints(
            issuer=str(data.get("issuer") or default.issuer),
            authorization_endpoint=pick("authorization_endpoint", default.authorization_endpoint),
            token_endpoint=pick("token_endpoint", default.token_endpoint),
            revocation_endpoint=pick("revocation_endpoint", default.revocation_endpoint),
            device_authorization_endpoint=pick(
                "device_authorization_endpoint", default.device_authorization_endpoint
            ),
        )

    # -- transport ------------------------------------------------------------------------
    def _send(self, method: str, url: str, form: Mapping[str, str] | None = None) -> httpx.Response:
        headers = {"Accept": "application/json", "User-Agent": f"llmgw/{__version__}"}
        try:
            return self._http.request(method, url, data=form, headers=headers, timeout=TIMEOUT)
        except httpx.TimeoutException:
            raise Unavailable(
                f"the server at {self.url} did not answer in time",
                hint="is `llmgw serve` running there and reachable? check --url",
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the server at {self.url} ({type(exc).__name__})",
                hint="is `llmgw serve` running there? check --url",
            ) from None

    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    def _post(self, url: str, form: Mapping[str, str]) -> dict[str, Any]:
        """POST a form; the JSON object of a 2xx answer, or the OAuth error it carries."""
        resp = self._send("POST", url, form)
        data = self._json(resp)
        if resp.is_success and isinstance(data, dict):
            return data
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            desc = data.get("error_description")
            raise OAuthError(data["error"], desc if isinstance(desc, str) else None)
        if resp.status_code in (502, 503, 504):
            raise Unavailable(f"the server at {self.url} is unavailable (HTTP {resp.status_code})")
        raise UpstreamError(
            f"unexpected answer from {url}: HTTP {resp.status_code}"
            + ("" if isinstance(data, dict) else ", not JSON")
        )

    def _tokens(self, data: Mapping[str, Any], asked_at: float, scope: str | None) -> TokenSet:
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise UpstreamError(f"the token answer of {self.url} has no access_token")
        if str(data.get("token_type", "")).lower() != "bearer":
            raise UpstreamError(f"the token answer of {self.url} is not a Bearer token")
        refresh = data.get("refresh_token")
        try:
            lifetime = float(data.get("expires_in", 0))
        except (TypeError, ValueError):
            lifetime = 0.0
        granted = data.get("scope")
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=asked_at + max(lifetime, 0.0),
            scope=granted if isinstance(granted, str) else (scope or ""),
        )

    # -- grants ---------------------------------------------------------------------------
    def authorize_url(
        self, *, redirect_uri: str, state: str, challenge: str, scope: str | None
    ) -> str:
        """The address to open in the browser (response_type=code, S256)."""
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if scope:
            params["scope"] = scope
        return f"{self.endpoints.authorization_endpoint}?{urlencode(params)}"

    def exchange_code(
        self, code: str, *, redirect_uri: str, verifier: str, scope: str | None
    ) -> TokenSet:
        """Redeem an authorization code with its PKCE verifier."""
        asked = self._clock()
        data = self._post(
            self.endpoints.token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "code_verifier": verifier,
            },
        )
        return self._tokens(data, asked, scope)

    def refresh(self, refresh_token: str, *, token_endpoint: str | None = None) -> TokenSet:
        """A new access token and (rotation) a new refresh token; the old one is spent."""
        asked = self._clock()
        data = self._post(
            token_endpoint or self.endpoints.token_endpoint,
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            },
        )
        tokens = self._tokens(data, asked, None)
        if tokens.refresh_token is None:  # no rotation: the old refresh token stays valid
            tokens = TokenSet(tokens.access_token, refresh_token, tokens.expires_at, tokens.scope)
        return tokens

    def revoke(self, token: str, hint: str, *, revocation_endpoint: str | None = None) -> None:
        """RFC 7009 revocation; 200 also for a token the server does not know."""
        self._post_ok(
            revocation_endpoint or self.endpoints.revocation_endpoint,
            {"token": token, "token_type_hint": hint, "client_id": self.client_id},
        )

    def _post_ok(self, url: str, form: Mapping[str, str]) -> None:
        resp = self._send("POST", url, form)
        if resp.is_success:
            return
        data = self._json(resp)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            desc = data.get("error_description")
            raise OAuthError(data["error"], desc if isinstance(desc, str) else None)
        if resp.status_code in (502, 503, 504):
            raise Unavailable(f"the server at {self.url} is unavailable (HTTP {resp.status_code})")
        raise UpstreamError(f"unexpected answer from {url}: HTTP {resp.status_code}")

    # -- device flow (RFC 8628) -----------------------------------------------------------
    def device_start(self, scope: str | None) -> DeviceGrant:
        """Ask for a device code and a user code."""
        form = {"client_id": self.client_id}
        if scope:
            form["scope"] = scope
        data = self._post(self.endpoints.device_authorization_endpoint, form)
        try:
            return DeviceGrant(
                device_code=str(data["device_code"]),
                user_code=_printable(str(data["user_code"])),
                verification_uri=_printable(str(data["verification_uri"])),
                verification_uri_complete=(
                    _printable(str(data["verification_uri_complete"]))
                    if data.get("verification_uri_complete")
                    else None
                ),
                expires_in=float(data["expires_in"]),
                interval=float(data.get("interval") or 5),
            )
        except (KeyError, TypeError, ValueError):
            raise UpstreamError(
                f"the device authorization answer of {self.url} lacks a required field"
            ) from None

    def device_poll(
        self,
        grant: DeviceGrant,
        *,
        scope: str | None,
        on_slow_down: Callable[[float], None] | None = None,
    ) -> TokenSet:
        """Poll the token endpoint until the user approves (RFC 8628 §3.4-3.5).

        Waits ``interval`` before each poll, adds 5 s on ``slow_down`` (for this and every later
        poll), and stops with an ``AuthError`` on ``access_denied``, ``expired_token`` or once
        ``expires_in`` has passed; any other error ends the polling too.
        """
        interval = max(grant.interval, 1.0)
        deadline = self._clock() + grant.expires_in
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": grant.device_code,
            "client_id": self.client_id,
        }
        while True:
            if self._clock() + interval > deadline:
                raise _device_expired(grant)
            self._sleep(interval)
            asked = self._clock()
            try:
                return self._tokens(self._post(self.endpoints.token_endpoint, form), asked, scope)
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    if on_slow_down is not None:
                        on_slow_down(interval)
                    continue
                if exc.error == "access_denied":
                    raise AuthError(
                        "the login was denied on the approval page",
                        hint="run `llmgw login --device` again and choose Approve",
                    ) from None
                if exc.error == "expired_token":
                    raise _device_expired(grant) from None
                raise


def _device_expired(grant: DeviceGrant) -> LlmgwError:
    return AuthError(
        f"the code {grant.user_code} expired before it was approved",
        hint="run `llmgw login --device` again and approve the new code sooner",
    )


def check_scope(scope: str | None) -> str | None:
    """A ``--scope`` value normalised (space or comma separated), or ``UsageError``."""
    if scope is None:
        return None
    words = [w for w in scope.replace(",", " ").split() if w]
    bad = [w for w in words if not all(c.isascii() and (c.isalnum() or c in ":._-") for c in w)]
    if not words or bad:
        raise UsageError(
            f"--scope {scope!r} is not a list of scope names",
            hint="e.g. --scope 'chat keys:self' (scopes: chat, keys:self, usage:self, admin)",
            param="scope",
        )
    return " ".join(dict.fromkeys(words))
