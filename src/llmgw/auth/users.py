"""Users: the people and services that own API keys."""

from __future__ import annotations

import builtins
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from llmgw.auth._db import db_errors
from llmgw.auth.changes import AuthChange
from llmgw.auth.refs import ambiguous, id_match, too_short
from llmgw.errors import Conflict, NotFound, UsageError
from llmgw.storage.tables import ApiKey, User, utcnow

__all__ = [
    "Role",
    "UserInfo",
    "UserService",
    "check_user_fields",
    "check_user_ref",
    "find_user",
    "normalize_email",
]

Role = Literal["user", "admin"]
ROLES: tuple[str, ...] = get_args(Role)

# Deliberately simple: one @, no spaces or control characters, a dot in the domain.
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+")
_EMAIL_MAX = 320
_NAME_MAX = 200
_REF_HINT = "give their email, id (8+ characters) or name; `llmgw users list` shows every user"

_USERS = User.metadata.tables["users"]
_KEYS = ApiKey.metadata.tables["api_keys"]


def normalize_email(email: str) -> str:
    """``email`` trimmed and lower-cased; ``UsageError`` unless it looks like an address."""
    cleaned = email.strip().lower()
    if len(cleaned) > _EMAIL_MAX or not _EMAIL_RE.fullmatch(cleaned):
        shown = email if len(email) <= 80 else email[:80] + "…"
        raise UsageError(
            f"invalid email address {shown!r}",
            hint="use the form name@example.com",
            param="email",
        )
    return cleaned


def check_user_ref(ref: str | None) -> str | None:
    """``ref`` (a user as a person names one: email, id, id prefix or name; ``find_user``
    resolves it), refused before any database is touched when it is empty."""
    if ref is not None and not ref.strip():
        raise UsageError(
            "--user is empty",
            hint="give the user's email, id (8+ characters) or name; `llmgw users list` shows them",
            param="user",
        )
    return ref


def check_user_fields(email: str, name: str | None, role: str) -> tuple[str, str | None, str]:
    """Validate a new user's fields; return the normalised email, name and role."""
    address = normalize_email(email)
    if role not in ROLES:
        raise UsageError(f"invalid role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    if name is not None:
        name = name.strip() or None
        if name is not None and (
            len(name) > _NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            raise UsageError("invalid name", hint=f"use at most {_NAME_MAX} printable characters")
    return address, name, role


@dataclass(frozen=True, slots=True)
class UserInfo:
    """One user, detached from any database session."""

    id: uuid.UUID
    email: str
    name: str | None
    role: str
    disabled: bool
    created_at: datetime
    keys: int = 0
    """Keys of this user that are not revoked."""


def _select() -> sa.Select[Any]:
    live_keys = (
        sa.select(sa.func.count())
        .select_from(_KEYS)
        .where(_KEYS.c.user_id == _USERS.c.id, _KEYS.c.revoked_at.is_(None))
        .scalar_subquery()
    )
    return sa.select(
        _USERS.c.id,
        _USERS.c.email,
        _USERS.c.name,
        _USERS.c.role,
        _USERS.c.disabled,
        _USERS.c.created_at,
        live_keys.label("keys"),
    )


def _info(row: sa.Row[Any]) -> UserInfo:
    m = row._mapping
    return UserInfo(
        id=m["id"],
        email=m["email"],
        name=m["name"],
        role=m["role"],
        disabled=bool(m["disabled"]),
        created_at=m["created_at"],
        keys=int(m["keys"] or 0),
    )


def _shown(ref: str) -> str:
    return ref if len(ref) <= 80 else ref[:80] + "…"


def _by_form(ref: str) -> sa.Select[Any] | None:
    """The query for ``ref`` read as an email (any case: emails are stored lower-cased), a whole
    id or an id prefix of 8+ hex digits; ``None`` when it has none of those forms."""
    if "@" in ref:
        return _select().where(_USERS.c.email == ref.lower())
    match = id_match(_USERS.c.id, ref)
    return None if match is None else _select().where(match)


def _ambiguous(ref: str, rows: builtins.list[sa.Row[Any]]) -> UsageError:
    """The error for a ref naming several users: their short ids and emails."""
    return ambiguous(
        _shown(ref),
        rows,
        "users",
        lambda r: r._mapping["email"] + (", disabled" if r._mapping["disabled"] else ""),
        "give the email or the id (8+ characters) of the one you mean; "
        "`llmgw users list` shows them",
    )


def find_user(conn: Connection, ref: str) -> sa.Row[Any]:
    """The one user a person's ``ref`` names: their email (any case), whole id, a unique id
    prefix (8+ hex digits, as ``llmgw users list`` shows) or exact display name.

    A ref that names several users (an id prefix of two users, a display name two users share,
    a name that is also another user's id prefix or email) is a ``UsageError`` listing their
    ids and emails; none is ``NotFound``. The one resolver behind every command, option
    (``--user``), admin API route and screen that takes a user (``UserService.get``).
    """
    ref = ref.strip()
    query = _by_form(ref)
    order = (_USERS.c.created_at, _USERS.c.id)
    rows = conn.execute(query.order_by(*order)).all() if query is not None else []
    named = (
        conn.execute(_select().where(_USERS.c.name == ref).order_by(*order)).all()
        if ref and len(ref) <= _NAME_MAX
        else []
    )
    found = {r._mapping["id"]: r for r in (*rows, *named)}
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        candidates = sorted(
            found.values(), key=lambda r: (r._mapping["created_at"], r._mapping["id"])
        )
        raise _ambiguous(ref, candidates)
    short = too_short(
        ref, "a user", "their", "an email or name works too; `llmgw users list` shows every user"
    )
    if short is not None:
        raise short
    raise NotFound(f"no user matches {_shown(ref)!r}", hint=_REF_HINT)


class UserService:
    """Create, list, find, disable and enable users. Keys of a disabled user stop working.

    ``on_change`` is called after a committed disable or enable (see ``KeyService``).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[AuthChange], None] | None = None,
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._on_change = on_change

    def create(self, email: str, name: str | None = None, role: str = "user") -> UserInfo:
        """Add a user; ``Conflict`` when the email is taken, ``UsageError`` for bad values."""
        address, name, role = check_user_fields(email, name, role)
        user_id = uuid.uuid4()
        try:
            with db_errors(self.engine, "creating a user"), self.engine.begin() as conn:
                conn.execute(
                    sa.insert(_USERS).values(
                        id=user_id,
                        email=address,
                        name=name,
                        role=role,
                        disabled=False,
                        created_at=self._clock(),
                    )
                )
                return _info(conn.execute(_select().where(_USERS.c.id == user_id)).one())
        except IntegrityError:
            raise Conflict(
                f"a user with email {address!r} already exists",
                hint="`llmgw users list` shows existing users",
            ) from None

    def list(self) -> builtins.list[UserInfo]:
        """Every user, oldest first."""
        with db_errors(self.engine, "listing users"), self.engine.connect() as conn:
            rows = conn.execute(_select().order_by(_USERS.c.created_at, _USERS.c.email))
            return [_info(r) for r in rows]

    def get(self, ref: str) -> UserInfo:
        """The user ``ref`` names (``find_user``): email, id, id prefix or name."""
        with db_errors(self.engine, "looking up a user"), self.engine.connect() as conn:
            return _info(find_user(conn, ref))

    def _set_disabled(self, ref: str, disabled: bool) -> UserInfo:
        doing = "disabling a user" if disabled else "enabling a user"
        with db_errors(self.engine, doing), self.engine.begin() as conn:
            user_id = find_user(conn, ref)._mapping["id"]
            conn.execute(sa.update(_USERS).where(_USERS.c.id == user_id).values(disabled=disabled))
            info = _info(conn.execute(_select().where(_USERS.c.id == user_id)).one())
        # After the commit: a server that looks the user's keys up again must see the change.
        if self._on_change is not None:
            self._on_change(AuthChange(users=(info.id,), forget_refusals=not disabled))
        return info

    def set_role(self, ref: str, role: str) -> UserInfo:
        """Give the user ``role`` (``user`` or ``admin``). Idempotent; announced like a disable,
        so a running server's admin check sees the new role within the same bound."""
        if role not in ROLES:
            raise UsageError(f"invalid role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
        with db_errors(self.engine, "changing a user's role"), self.engine.begin() as conn:
            user_id = find_user(conn, ref)._mapping["id"]
            conn.execute(sa.update(_USERS).where(_USERS.c.id == user_id).values(role=role))
            info = _info(conn.execute(_select().where(_USERS.c.id == user_id)).one())
        if self._on_change is not None:
            self._on_change(AuthChange(users=(info.id,)))
        return info

    def disable(self, ref: str) -> UserInfo:
        """Disable the user; their keys stop authenticating. Idempotent."""
        return self._set_disabled(ref, True)

    def enable(self, ref: str) -> UserInfo:
        """Enable the user again; their unexpired, unrevoked keys work again. Idempotent."""
        return self._set_disabled(ref, False)
