"""Passwords: argon2id hashes (argon2-cffi), checked in constant time whether the user exists.

``verify_password(None, pw)`` still runs one full argon2 verification (against a dummy hash made
once per process), so a login for an unknown email, a user without a password and a wrong
password take the same time and give the same answer. The parameters are argon2-cffi's defaults
(RFC 9106's second recommended profile: argon2id, t=3, m=64 MiB, p=4); ``needs_rehash`` says when
a stored hash was made with other parameters, and a successful login re-hashes it.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine

from llmgw.auth._db import db_errors
from llmgw.auth.users import find_user, normalize_email
from llmgw.errors import UsageError
from llmgw.storage.tables import User, utcnow

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "LoginUser",
    "authenticate",
    "bootstrap_admin",
    "check_password",
    "hash_password",
    "needs_rehash",
    "set_password",
    "verify_password",
]

MIN_PASSWORD = 10
"""Shortest password accepted (NIST SP 800-63B asks for at least 8; argon2 makes guessing slow,
length makes it hopeless)."""
MAX_PASSWORD = 1024
"""Longest password accepted: argon2 hashes any length, this only bounds the work of one request."""

_HASHER = PasswordHasher()
_dummy: str | None = None
_dummy_lock = threading.Lock()

_USERS = User.metadata.tables["users"]


def check_password(password: str) -> str:
    """``password`` when it is acceptable; ``UsageError`` saying why not (never echoing it)."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(
            "the password is too short", hint=f"use at least {MIN_PASSWORD} characters"
        )
    if len(password) > MAX_PASSWORD:
        raise UsageError("the password is too long", hint=f"use at most {MAX_PASSWORD} characters")
    if any(c in password for c in "\x00\r\n"):
        raise UsageError("the password contains a NUL or line break", hint="type it on one line")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (an acceptable one: ``check_password`` first)."""
    return _HASHER.hash(check_password(password))


def _dummy_hash() -> str:
    global _dummy
    with _dummy_lock:
        if _dummy is None:
            _dummy = _HASHER.hash(secrets.token_urlsafe(24))
        return _dummy


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; with ``None`` (no such user, or no password set)
    the same argon2 work is done against a dummy hash and the answer is ``False``."""
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]  # same work as any other long guess; never matches
    target = stored if stored is not None else _dummy_hash()
    try:
        ok = _HASHER.verify(target, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (re-hash after login)."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@dataclass(frozen=True, slots=True)
class LoginUser:
    """The user a password login authenticated."""

    id: uuid.UUID
    email: str
    name: str | None
    role: str


def set_password(
    engine: Engine, ref: str, password: str, *, now: datetime | None = None
) -> LoginUser:
    """Store a new hash for the password of the user ``ref`` names (``find_user``: email, id, id
    prefix or name); ``NotFound`` when there is no such user."""
    hashed = hash_password(password)
    with db_errors(engine, "setting a password"), engine.begin() as conn:
        row = find_user(conn, ref)
        conn.execute(
            sa.update(_USERS)
            .where(_USERS.c.id == row.id)
            .values(password_hash=hashed, password_changed_at=now or utcnow())
        )
    return LoginUser(row.id, row.email, row.name, row.role)


def authenticate(engine: Engine, email: str, password: str) -> LoginUser | None:
    """The user when ``email`` and ``password`` match an enabled user, else ``None``.

    Every path costs one argon2 verification (unknown or malformed email, disabled user, no
    password, wrong password), so neither the answer nor its timing tells whether the email
    exists. A hash made with old parameters is replaced after a successful check.
    """
    try:
        address: str | None = normalize_email(email)
    except UsageError:
        address = None
    row: Any = None
    if address is not None:
        with db_errors(engine, "checking a password"), engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    _USERS.c.id,
                    _USERS.c.email,
                    _USERS.c.name,
                    _USERS.c.role,
                    _USERS.c.disabled,
                    _USERS.c.password_hash,
                ).where(_USERS.c.email == address)
            ).first()
    stored = row.password_hash if row is not None else None
    if not verify_password(stored, password) or row is None or stored is None or row.disabled:
        return None
    if needs_rehash(stored):
        with db_errors(engine, "re-hashing a password"), engine.begin() as conn:
            conn.execute(
                sa.update(_USERS)
                .where(_USERS.c.id == row.id, _USERS.c.password_hash == stored)
                .values(password_hash=_HASHER.hash(password))
            )
    return LoginUser(row.id, row.email, row.name, row.role)


def bootstrap_admin(
    engine: Engine, email: str, password: str, *, name: str | None = None
) -> LoginUser:
    """Make the first admin: create ``email`` (or promote the existing user) with role admin and
    this password. ``Conflict`` when any admin exists already: after the first, admins are made
    by admins (``llmgw users set-role``)."""
    from llmgw.auth.users import check_user_fields
    from llmgw.errors import Conflict

    address, name, _ = check_user_fields(email, name, "admin")
    hashed = hash_password(password)
    now = utcnow()
    with db_errors(engine, "creating the first admin"), engine.begin() as conn:
        admins = conn.execute(
            sa.select(sa.func.count()).select_from(_USERS).where(_USERS.c.role == "admin")
        ).scalar_one()
        if admins:
            raise Conflict(
                "an admin exists already; bootstrap-admin only makes the first one",
                hint="an admin runs `llmgw users set-role EMAIL admin` and "
                "`llmgw users set-password EMAIL`",
            )
        row = conn.execute(sa.select(_USERS.c.id).where(_USERS.c.email == address)).first()
        values = {"role": "admin", "password_hash": hashed, "password_changed_at": now}
        if row is None:
            user_id = uuid.uuid4()
            conn.execute(
                sa.insert(_USERS).values(
                    id=user_id, email=address, name=name, disabled=False, created_at=now, **values
                )
            )
        else:
            user_id = row.id
            conn.execute(sa.update(_USERS).where(_USERS.c.id == user_id).values(**values))
        row = conn.execute(
            sa.select(_USERS.c.id, _USERS.c.email, _USERS.c.name, _USERS.c.role).where(
                _USERS.c.id == user_id
            )
        ).one()
    return LoginUser(row.id, row.email, row.name, row.role)
