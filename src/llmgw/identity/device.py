"""The device authorization grant (RFC 8628) for headless machines (``llmgw login --device``).

``start`` answers ``POST /oauth/device_authorization``; ``pending``, ``approve`` and ``deny``
serve the ``/device`` verification page; ``poll`` answers the token endpoint's device_code grant.
User codes are 8 letters of the 20 consonants of §6.1 (≈34.5 bits), shown as ``BCDF-GHJK``,
entered in any case with any punctuation. The device code itself is 256 random bits, stored as
a digest; it yields tokens once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from llmgw.auth._db import db_errors
from llmgw.errors import Conflict, NotFound
from llmgw.identity._secrets import digest, new_secret
from llmgw.identity.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidGrant,
    SlowDown,
)
from llmgw.identity.scopes import format_scope, parse_scope
from llmgw.storage.tables import OAuthClient, OAuthDeviceCode, utcnow

__all__ = [
    "DEVICE_TTL",
    "USER_CODE_ALPHABET",
    "DeviceApproved",
    "DeviceGrant",
    "DevicePending",
    "approve",
    "deny",
    "format_user_code",
    "normalize_user_code",
    "pending",
    "poll",
    "start",
]

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LEN = 8
DEVICE_TTL = timedelta(minutes=10)
INTERVAL = 5
SLOW_DOWN_STEP = 5
_T: sa.Table = OAuthDeviceCode.__table__  # type: ignore[attr-defined]
_C: sa.Table = OAuthClient.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    """The device authorization response (RFC 8628 §3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int

    def __repr__(self) -> str:  # the device code is a bearer secret
        return f"DeviceGrant(user_code={self.user_code!r}, expires_in={self.expires_in})"


@dataclass(frozen=True, slots=True)
class DevicePending:
    """A device waiting for approval, as the verification page shows it."""

    user_code: str
    client_id: str
    client_name: str
    scope: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceApproved:
    """An approved device code, now used up: issue tokens for ``user_id`` with ``scope``."""

    client_id: str
    user_id: uuid.UUID
    scope: str


def normalize_user_code(text: str) -> str:
    """The stored form of a typed user code: upper case, letters only (``bcdf-ghjk`` -> ``BCDFGHJK``)."""
    return "".join(c for c in text.upper() if "A" <= c <= "Z")[:32]


def format_user_code(code: str) -> str:
    """A stored user code as shown to people: ``BCDF-GHJK``."""
    return f"{code[:4]}-{code[4:]}" if len(code) == USER_CODE_LEN else code


def start(
    engine: Engine,
    client_id: str,
    scope: str,
    *,
    base_url: str = "",
    clock: Callable[[], datetime] = utcnow,
    ttl: timedelta = DEVICE_TTL,
    interval: int = INTERVAL,
) -> DeviceGrant:
    """Begin a device authorization for an already authenticated ``client_id``.

    ``base_url`` is the server's public URL; the verification page is ``{base_url}/device``.
    """
    scope = format_scope(parse_scope(scope))
    device_code = new_secret()
    now = clock()
    with db_errors(engine, "starting a device authorization"), engine.begin() as conn:
        for _attempt in range(10):
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LEN))
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.insert(_T).values(
                            device_digest=digest(device_code),
                            user_code=user_code,
                            client_id=client_id,
                            scope=scope,
                            expires_at=now + ttl,
                            interval=interval,
                            last_polled_at=None,
                            approved_user_id=None,
                            denied_at=None,
                            used_at=None,
                        )
                    )
                break
            except IntegrityError:  # a user code still in the table: draw another
                continue
        else:  # pragma: no cover - 20^8 codes
            raise Conflict("could not allocate a unique user code", hint="try again")
    shown = format_user_code(user_code)
    uri = f"{base_url.rstrip('/')}/device"
    return DeviceGrant(
        device_code=device_code,
        user_code=shown,
        verification_uri=uri,
        verification_uri_complete=f"{uri}?user_code={shown}",
        expires_in=int(ttl.total_seconds()),
        interval=interval,
    )


def _undecided(
    conn: sa.Connection, user_code: str, now: datetime
) -> Any:  # a Row of _T joined with the client's name
    code = normalize_user_code(user_code)
    if len(code) != USER_CODE_LEN:
        return None
    return conn.execute(
        sa.select(_T, _C.c.name.label("client_name"))
        .join(_C, _C.c.client_id == _T.c.client_id)
        .where(
            _T.c.user_code == code,
            _T.c.expires_at > now,
            _T.c.approved_user_id.is_(None),
            _T.c.denied_at.is_(None),
            _T.c.used_at.is_(None),
        )
    ).first()


def pending(
    engine: Engine, user_code: str, *, clock: Callable[[], datetime] = utcnow
) -> DevicePending | None:
    """The device waiting under ``user_code``; ``None`` if unknown, expired or already decided."""
    with db_errors(engine, "looking up a device code"), engine.connect() as conn:
        row = _undecided(conn, user_code, clock())
    if row is None:
        return None
    return DevicePending(
        user_code=format_user_code(row.user_code),
        client_id=row.client_id,
        client_name=row.client_name,
        scope=row.scope,
        expires_at=row.expires_at,
    )


def _decide(engine: Engine, user_code: str, values: dict[str, Any], now: datetime) -> None:
    with db_errors(engine, "deciding a device code"), engine.begin() as conn:
        row = _undecided(conn, user_code, now)
        if row is not None and not parse_scope(values.get("scope")) <= parse_scope(row.scope):
            raise ValueError("an approval may narrow the requested scope, never widen it")
        if row is not None:
            done = conn.execute(
                sa.update(_T)
                .where(
                    _T.c.device_digest == row.device_digest,
                    _T.c.approved_user_id.is_(None),
                    _T.c.denied_at.is_(None),
                )
                .values(**values)
            )
            if done.rowcount == 1:
                return
    raise NotFound(
        "no device is waiting for this code",
        hint="check the code on the device; codes expire after 10 minutes",
    )


def approve(
    engine: Engine,
    user_code: str,
    user_id: uuid.UUID,
    *,
    scope: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """The user approves the device; its next poll gets tokens. ``NotFound`` if not pending.

    ``scope`` is what the user was shown and approved (the request narrowed to what they may
    hold: no ``admin`` for a user who is not an admin); it replaces the requested scope, so the
    device never gets more than the approval page listed. It must lie within the request."""
    values: dict[str, Any] = {"approved_user_id": user_id}
    if scope is not None:
        values["scope"] = format_scope(parse_scope(scope))
    _decide(engine, user_code, values, clock())


def deny(engine: Engine, user_code: str, *, clock: Callable[[], datetime] = utcnow) -> None:
    """The user denies the device; its next poll gets ``access_denied``. ``NotFound`` if not pending."""
    now = clock()
    _decide(engine, user_code, {"denied_at": now}, now)


def poll(
    engine: Engine,
    device_code: str,
    *,
    client_id: str,
    clock: Callable[[], datetime] = utcnow,
) -> DeviceApproved:
    """One poll of the token endpoint (RFC 8628 §3.4-3.5).

    Raises ``AuthorizationPending``, ``SlowDown`` (polled sooner than ``interval`` after the last
    poll; the interval grows by 5 s), ``AccessDenied``, ``ExpiredToken``, or ``InvalidGrant``
    (unknown, another client's, or already used). Returns the approval exactly once.
    """
    if not isinstance(device_code, str) or not device_code or len(device_code) > 200:
        raise InvalidGrant("invalid device code")
    key = digest(device_code)
    now = clock()
    with db_errors(engine, "polling a device code"), engine.begin() as conn:
        row: Any = conn.execute(sa.select(_T).where(_T.c.device_digest == key)).first()
        if row is None or row.client_id != client_id or row.used_at is not None:
            raise InvalidGrant("invalid device code")
        if row.expires_at <= now:
            raise ExpiredToken("the device code expired; start again")
        if row.denied_at is not None:
            raise AccessDenied("the user denied the authorization")
        too_soon = (
            row.last_polled_at is not None
            and (now - row.last_polled_at).total_seconds() < row.interval
        )
        values: dict[str, Any] = {"last_polled_at": now}
        if too_soon:
            values["interval"] = row.interval + SLOW_DOWN_STEP
        elif row.approved_user_id is not None:
            values["used_at"] = now
        done = conn.execute(
            sa.update(_T).where(_T.c.device_digest == key, _T.c.used_at.is_(None)).values(**values)
        )
        if done.rowcount != 1:
            raise InvalidGrant("invalid device code")
    if too_soon:
        raise SlowDown(f"polling too fast; wait {row.interval + SLOW_DOWN_STEP} s between polls")
    if row.approved_user_id is None:
        raise AuthorizationPending("the user has not approved the device yet")
    return DeviceApproved(client_id=row.client_id, user_id=row.approved_user_id, scope=row.scope)
