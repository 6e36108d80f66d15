"""``RemoteAdmin``: the admin operations over the ``/admin/v1`` API of a running ``llmgw serve``.

Used by the CLI with ``--url`` (or ``LLMGW_URL``) and by ``llmgw dash --url``. Every method maps
to one HTTP call; the answer's body is the record (a list comes as ``{"object": "list", "data":
[...]}``), so the output equals ``LocalAdmin``'s. An OpenAI error envelope coming back becomes the
``LlmgwError`` subclass local mode raises, with the server's message (so the exit codes match);
a server that cannot be reached is ``Unavailable`` (exit 9) naming the URL.

Wire format (what the routes in ``llmgw.server.routes.admin`` read):

- ``POST /admin/v1/keys``: ``{"name", "user", "expires_in" (seconds or null), "rpm", "tpm",
  "models"}``.
- ``PATCH /admin/v1/keys/{ref}``: any of ``"rpm"``, ``"tpm"``, ``"models"``, ``"expires_at"`` (ISO
  8601 or null); a field left out stays as it is, ``null`` clears it.
- ``POST /admin/v1/users``: ``{"email", "name", "role"}``; ``PATCH /admin/v1/users/{ref}``:
  ``{"role"}``.
- ``POST /admin/v1/tokens``: ``{"user", "name", "expires_in" (seconds), "scope", "rpm",
  "tpm"}``; ``POST /admin/v1/oauth/clients``: ``{"name", "kind", "redirect_uris",
  "grant_types", "scopes"}``; ``POST /admin/v1/oauth/keys/rotate``: ``{"overlap_seconds"}``
  (null: the server's setting).
- Query times (``since``, ``until``) are ISO 8601 in UTC.

A pasted whole key secret used as a ``ref`` is sent as its public prefix (which names one key), so
the secret never lands in a URL or the server's access log. The token is sent only in the
``Authorization`` header; it is in no error, log line or ``repr``.

httpx is imported here only: local mode never loads it (tests/test_import_hygiene.py).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from llmgw import __version__
from llmgw.admin.aliases import RemoteAliasOps
from llmgw.admin.answers import error_from_answer, unreachable_reason
from llmgw.admin.budgets import RemoteBudgetOps
from llmgw.admin.ops import UNSET, Record, Unset
from llmgw.errors import Unavailable, UpstreamError, UsageError

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "RemoteAdmin"]

CONNECT_TIMEOUT = 5.0
"""Seconds to open the connection to the server."""
READ_TIMEOUT = 30.0
"""Seconds to wait for each read of the answer (usage queries over many rows take a while)."""

_PREFIX_LEN = 12  # llmgw.auth.keys.PREFIX_LEN (not imported: it loads SQLAlchemy)
_WHOLE_SECRET = re.compile(r"llmgw_[A-Za-z0-9_-]{43}")
_TOKEN_OK = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a header value, nothing to inject


def _safe_url(url: str) -> str:
    """``url`` without credentials or query (``https://user:pw@h/x?t=1`` -> ``https://h/x``), as
    errors show it; refuses anything but an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            "--url is not an http(s) URL",
            hint="give the server's address, e.g. --url http://127.0.0.1:8080 (or LLMGW_URL)",
            param="url",
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _key_ref(ref: str) -> str:
    """A key ``ref`` as sent: a whole secret is cut to its prefix (see the module docstring)."""
    return ref[:_PREFIX_LEN] if _WHOLE_SECRET.fullmatch(ref.strip()) else ref


def _segment(text: str) -> str:
    """``text`` (an id, a prefix, an email or any name) as a URL path segment: every ``/``,
    ``?``, ``#`` and ``%`` escaped, and a name of dots only (``..``) too, which URL normalisation
    would otherwise remove."""
    segment = quote(text, safe="")
    return segment.replace(".", "%2E") if segment.strip(".") == "" else segment


def _ref(ref: str) -> str:
    """A key ``ref`` as a URL path segment (a whole secret cut to its prefix)."""
    return _segment(_key_ref(ref))


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat()


def _query(**params: Any) -> dict[str, str]:
    """Query parameters without the ``None`` ones; datetimes as ISO, booleans as true/false."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[name] = value.astimezone(UTC).isoformat()
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


class RemoteAdmin(RemoteBudgetOps, RemoteAliasOps):
    """``AdminOps`` over HTTP: the ``/admin/v1`` API of the llmgw server at ``url``.

    ``token`` is an API key whose user has the admin role, or an OAuth access token with the
    ``admin`` scope; ``auth`` replaces it with an ``httpx.Auth`` that supplies (and refreshes) the
    token itself (the stored ``llmgw login``). ``source`` (``cli`` or ``tui``) is sent as
    ``X-Llmgw-Source`` and recorded in the audit log. ``transport`` is for tests (an ASGI app).
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        source: str = "cli",
        *,
        auth: httpx.Auth | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _safe_url(url)
        if not token and auth is None:
            raise UsageError(
                f"--url {self.url} needs an admin's API key or a login",
                hint="pass --token KEY, set LLMGW_TOKEN (a key whose user has the admin role), "
                f"or run `llmgw login --url {self.url}`",
                param="token",
            )
        if token and not _TOKEN_OK.fullmatch(token):
            raise UsageError(
                "the token has spaces or characters outside printable ASCII",
                hint="pass the key exactly as `llmgw keys create` printed it",
                param="token",
            )
        self.source = source
        headers = {
            "User-Agent": f"llmgw/{__version__}",
            "X-Llmgw-Source": source,
            "Accept": "application/json",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=self.url + "/admin/v1",
            headers=headers,
            auth=None if token else auth,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc credentials picked up behind the user's back
        )

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"RemoteAdmin(url={self.url!r}, source={self.source!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        where = f"{self.url}/admin/v1{path}"
        try:
            resp = self._client.request(method, path, params=params, json=body)
        except httpx.TimeoutException as exc:
            phase = "connect to" if isinstance(exc, httpx.ConnectTimeout) else "get an answer from"
            raise Unavailable(
                f"could not {phase} the llmgw server at {self.url} in time",
                hint="is `llmgw serve` running there and reachable? check --url / LLMGW_URL",
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the llmgw server at {self.url}: {unreachable_reason(exc)}",
                hint="is `llmgw serve` running there? check --url / LLMGW_URL",
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.is_success and data is not None:
            return data
        if resp.is_success:
            raise UpstreamError(f"the server at {where} did not answer JSON")
        if 300 <= resp.status_code < 400:
            raise UsageError(
                f"the server at {self.url} redirects (HTTP {resp.status_code})",
                hint="give the final address with --url (https:// if it redirects there)",
            )
        raise error_from_answer(
            resp.status_code, data, self.url, retry_after=resp.headers.get("retry-after")
        )

    def _list(self, path: str, params: Mapping[str, str] | None = None) -> builtins.list[Record]:
        data = self._call("GET", path, params=params)
        rows = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(rows, list):
            raise UpstreamError(f"unexpected answer from {self.url}/admin/v1{path}: not a list")
        return rows

    def _one(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Record:
        data = self._call(method, path, body=body)
        if not isinstance(data, dict):
            raise UpstreamError(f"unexpected answer from {self.url}/admin/v1{path}: not an object")
        return data

    # -- identity -------------------------------------------------------------------------
    def whoami(self) -> Record:
        """Who the server says the token belongs to; ``mode`` is ``remote``."""
        return {**self._one("GET", "/whoami"), "mode": "remote", "url": self.url}

    # -- keys -----------------------------------------------------------------------------
    def keys_list(self, *, include_revoked: bool = False) -> builtins.list[Record]:
        """Keys oldest first."""
        return self._list("/keys", _query(all=True) if include_revoked else None)

    def keys_show(self, ref: str) -> Record:
        """One key."""
        return self._one("GET", f"/keys/{_ref(ref)}")

    def keys_create(
        self,
        name: str,
        *,
        user: str | None = None,
        expires: timedelta | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        models: Sequence[str] | None = None,
    ) -> Record:
        """A new key with its one-time secret in ``"key"``."""
        body = {
            "name": name,
            "user": user,
            "expires_in": None if expires is None else expires.total_seconds(),
            "rpm": rpm,
            "tpm": tpm,
            "models": None if models is None else list(models),
        }
        return self._one("POST", "/keys", body)

    def keys_revoke(self, ref: str) -> Record:
        """Revoke a key (idempotent)."""
        return self._one("POST", f"/keys/{_ref(ref)}/revoke")

    def keys_rotate(self, ref: str) -> Record:
        """A new secret for the key's settings; the old key is revoked."""
        return self._one("POST", f"/keys/{_ref(ref)}/rotate")

    def keys_update(
        self,
        ref: str,
        *,
        rpm: int | None | Unset = UNSET,
        tpm: int | None | Unset = UNSET,
        models: Sequence[str] | None | Unset = UNSET,
        expires_at: datetime | None | Unset = UNSET,
    ) -> Record:
        """Change a live key's limits, allow-list or expiry (a field left out stays)."""
        body: dict[str, Any] = {}
        if not isinstance(rpm, Unset):
            body["rpm"] = rpm
        if not isinstance(tpm, Unset):
            body["tpm"] = tpm
        if not isinstance(models, Unset):
            body["models"] = None if models is None else list(models)
        if not isinstance(expires_at, Unset):
            body["expires_at"] = _iso(expires_at)
        return self._one("PATCH", f"/keys/{_ref(ref)}", body)

    # -- users ----------------------------------------------------------------------------
    def users_list(self) -> builtins.list[Record]:
        """Every user, oldest first."""
        return self._list("/users")

    def users_show(self, ref: str) -> Record:
        """One user by email, id, unique id prefix (8+ hex digits) or unique name."""
        return self._one("GET", f"/users/{_segment(ref)}")

    def users_create(self, email: str, *, name: str | None = None, role: str = "user") -> Record:
        """A new user."""
        return self._one("POST", "/users", {"email": email, "name": name, "role": role})

    def users_disable(self, ref: str) -> Record:
        """Disable a user (idempotent)."""
        return self._one("POST", f"/users/{_segment(ref)}/disable")

    def users_enable(self, ref: str) -> Record:
        """Enable a user (idempotent)."""
        return self._one("POST", f"/users/{_segment(ref)}/enable")

    def users_set_role(self, ref: str, role: str) -> Record:
        """Give a user ``role``."""
        return self._one("PATCH", f"/users/{_segment(ref)}", {"role": role})

    # -- usage ----------------------------------------------------------------------------
    def usage_stats(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        by: str = "day",
        key: str | None = None,
        user: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        status: int | None = None,
    ) -> builtins.list[Record]:
        """Statistics per group over ``[since, until)`` for the rows matching the filters."""
        params = _query(
            since=since,
            until=until,
            by=by,
            key=None if key is None else _key_ref(key),
            user=user,
            model=model,
            provider=provider,
            status=status,
        )
        return self._list("/usage/stats", params)

    def usage_recommend(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> builtins.list[Record]:
        """The server's optimisation recommendations over ``[since, until)``."""
        return self._list("/usage/recommend", _query(since=since, until=until))

    def usage_recent(self, *, limit: int = 100) -> builtins.list[Record]:
        """The newest requests from the server's in-memory ring buffer, newest first."""
        return self._list("/usage/recent", _query(limit=limit))

    # -- providers ------------------------------------------------------------------------
    def providers_status(self) -> builtins.list[Record]:
        """Live router state per (provider, model) (``"live": true``)."""
        return self._list("/providers")

    def providers_prices(self) -> builtins.list[Record]:
        """The price in force for every model of the server's providers."""
        return self._list("/providers/prices")

    def providers_test(self, name: str, *, model: str | None = None) -> Record:
        """One real round trip to provider ``name``, made by the server."""
        return self._one("POST", f"/providers/{quote(name, safe='')}/test", {"model": model})

    def providers_stored(self) -> builtins.list[Record]:
        """The providers stored in the server's database."""
        return self._list("/providers/stored")

    def providers_add(
        self, name: str, kind: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Store a provider through the server."""
        body = {**fields, "name": name, "kind": kind}
        if secret is not None:
            body["api_key"] = secret
        return self._one("POST", "/providers", body)

    def providers_edit(
        self, name: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        """Change a stored provider through the server."""
        body = dict(fields) if secret is None else {**fields, "api_key": secret}
        return self._one("PATCH", f"/providers/{quote(name, safe='')}", body)

    def providers_set_enabled(self, name: str, enabled: bool) -> Record:
        """Disable or enable a stored provider through the server."""
        verb = "enable" if enabled else "disable"
        return self._one("POST", f"/providers/{quote(name, safe='')}/{verb}")

    def providers_remove(self, name: str) -> Record:
        """Remove a stored provider through the server."""
        return self._one("DELETE", f"/providers/{quote(name, safe='')}")

    def models_catalog(self, *, refresh: bool = False) -> Record:
        """The server's cached catalog (``GET /admin/v1/models``), refreshed first on request."""
        data = self._call("GET", "/models", params={"refresh": "true" if refresh else "false"})
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise UpstreamError(f"unexpected answer from {self.url}/admin/v1/models: not a list")
        return data

    # -- audit ----------------------------------------------------------------------------
    def audit_list(
        self,
        *,
        since: datetime | None = None,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
    ) -> builtins.list[Record]:
        """Admin actions newest first."""
        return self._list("/audit", _query(since=since, limit=limit, actor=actor, action=action))

    # -- identity: personal access tokens, OAuth clients, signing keys (IdentityOps) ------------
    def tokens_create(
        self,
        user: str,
        name: str,
        *,
        expires: timedelta,
        scope: str,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> Record:
        """A personal access token made by the server; the token is in ``"token"``, once."""
        body = {
            "user": user,
            "name": name,
            "expires_in": expires.total_seconds(),
            "scope": scope,
            "rpm": rpm,
            "tpm": tpm,
        }
        return self._one("POST", "/tokens", body)

    def tokens_list(
        self, *, user: str | None = None, include_inactive: bool = False
    ) -> builtins.list[Record]:
        """Issued tokens, newest first."""
        return self._list("/tokens", _query(user=user, all=True if include_inactive else None))

    def tokens_show(self, ref: str) -> Record:
        """One token by ``jti`` or a unique prefix."""
        return self._one("GET", f"/tokens/{_token_ref(ref)}")

    def tokens_revoke(self, ref: str) -> Record:
        """Revoke a token (an access token: its grant)."""
        return self._one("POST", f"/tokens/{_token_ref(ref)}/revoke")

    def oauth_clients_list(self, *, include_revoked: bool = False) -> builtins.list[Record]:
        """Registered clients."""
        return self._list("/oauth/clients", _query(all=True) if include_revoked else None)

    def oauth_clients_show(self, client_id: str) -> Record:
        """One client."""
        return self._one("GET", f"/oauth/clients/{quote(client_id, safe='')}")

    def oauth_clients_create(
        self,
        name: str,
        *,
        kind: str,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        scopes: Sequence[str],
    ) -> Record:
        """Register a client; a confidential one's secret is in ``"client_secret"``, once."""
        body = {
            "name": name,
            "kind": kind,
            "redirect_uris": list(redirect_uris),
            "grant_types": list(grant_types),
            "scopes": list(scopes),
        }
        return self._one("POST", "/oauth/clients", body)

    def oauth_clients_revoke(self, client_id: str) -> Record:
        """Revoke a client and every token it holds."""
        return self._one("POST", f"/oauth/clients/{quote(client_id, safe='')}/revoke")

    def oauth_keys_list(self) -> builtins.list[Record]:
        """The server's signing keys."""
        return self._list("/oauth/keys")

    def oauth_keys_rotate(self, *, overlap: timedelta | None = None) -> Record:
        """A new signing key (``None``: the server's identity.key_overlap_seconds)."""
        seconds = None if overlap is None else overlap.total_seconds()
        return self._one("POST", "/oauth/keys/rotate", {"overlap_seconds": seconds})


def _token_ref(ref: str) -> str:
    """A token ``ref`` as a URL path segment: a whole JWT pasted is refused, not sent in a URL."""
    if ref.count(".") == 2 or len(ref) > 64:
        raise UsageError(
            "give the token's id (its jti, 8+ characters of it), not the token",
            hint="`llmgw tokens list` shows the ids",
            param="ID",
        )
    return quote(ref, safe="")
