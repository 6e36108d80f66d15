"""``/account``: the self-service pages (profile, API keys, usage and cost, tokens and sessions).

They run the same core services as the CLI and the admin API (``LocalAdmin`` with the signed-in
user as actor, so every change is in the audit log with source ``web``). A user sees and changes
only their own keys, usage, tokens and sessions; an admin sees everyone's. Someone else's key,
token or session is answered like an unknown one (404: no existence leak).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmgw.admin.local import LocalAdmin
from llmgw.admin.records import iso
from llmgw.errors import LlmgwError, NotFound
from llmgw.identity.sessions import SessionInfo
from llmgw.server.web.core import Web, posted, see_other, signed_in
from llmgw.server.web.flash import FLASH_COOKIE, FLASH_SECONDS
from llmgw.storage.tables import utcnow

__all__ = ["ACCOUNT_ROUTES"]

_DAYS = (1, 7, 30, 90)


_signed_in = signed_in
_posted = posted


def _admin(web: Web, session: SessionInfo, request: Request) -> LocalAdmin:
    return LocalAdmin(
        web.engine, web.actor(session, request), source="web", on_change=web.gateway.announce
    )


def _is_admin(session: SessionInfo) -> bool:
    return session.role == "admin"


# -- profile -------------------------------------------------------------------------------


def _profile(web: Web, session: SessionInfo, request: Request) -> dict[str, Any]:
    import sqlalchemy as sa

    from llmgw.storage.tables import User

    admin = _admin(web, session, request)
    user = admin.users_show(str(session.user_id))
    users: sa.Table = User.__table__  # type: ignore[attr-defined]
    with web.engine.connect() as conn:
        changed = conn.execute(
            sa.select(users.c.password_changed_at).where(users.c.id == session.user_id)
        ).scalar()
    user["password_changed_at"] = iso(changed)
    everyone = admin.users_list() if _is_admin(session) else []
    return {"user": user, "users": everyone}


async def profile_get(web: Web, request: Request) -> Response:
    """GET /account: who you are (an admin also sees every user)."""
    session = await _signed_in(web, request)
    if isinstance(session, Response):
        return session
    data = await web.db(_profile, web, session, request)
    return web.page("account.html", me=session, nav="profile", **data)


# -- keys ----------------------------------------------------------------------------------


def _keys(web: Web, session: SessionInfo, request: Request) -> list[dict[str, Any]]:
    records = _admin(web, session, request).keys_list(include_revoked=True)
    if not _is_admin(session):
        records = [r for r in records if r["user_id"] == str(session.user_id)]
    records.sort(key=lambda r: (r["status"] != "active", r["created_at"]), reverse=False)
    return records


async def _keys_page(
    web: Web,
    request: Request,
    session: SessionInfo,
    *,
    created: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    keys = await web.db(_keys, web, session, request)
    return web.page(
        "keys.html",
        status=status,
        me=session,
        nav="keys",
        keys=keys,
        created=created,
        error=error,
        everyone=_is_admin(session),
    )


async def keys_get(web: Web, request: Request) -> Response:
    """GET /account/keys: the keys (an admin's list has everyone's, with the owner), and once,
    right after the create form's redirect, the new key's secret (``server/web/flash.py``)."""
    session = await _signed_in(web, request)
    if isinstance(session, Response):
        return session
    sealed = request.cookies.get(FLASH_COOKIE)
    created = web.flash.open(sealed, session.id_digest) if sealed else None
    response = await _keys_page(web, request, session, created=created)
    if sealed:  # shown (or stale): gone either way, so a reload shows no secret
        response.delete_cookie(
            FLASH_COOKIE, path="/account/keys", httponly=True, samesite="strict",
            secure=web.secure(request),
        )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response


async def keys_post(web: Web, request: Request) -> Response:
    """POST /account/keys: create a key for yourself, then 303 to GET /account/keys, which
    shows its secret once (POST-redirect-GET: a reload never creates a second key)."""
    posted = await _posted(web, request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    days = form.get("expires", "")
    if days not in ("", "30", "90", "365"):
        return await _keys_page(
            web, request, session, error="Choose an expiry from the list.", status=400
        )
    expires = timedelta(days=int(days)) if days else None
    try:
        created = await web.db(
            _admin(web, session, request).keys_create,
            form.get("name", ""),
            user=session.email,
            expires=expires,
        )
    except LlmgwError as exc:
        return await _keys_page(web, request, session, error=exc.message, status=400)
    response = see_other("/account/keys#new-key")
    response.set_cookie(
        FLASH_COOKIE,
        web.flash.seal(
            {"name": created["name"], "key": created["key"], "prefix": created["prefix"]},
            session.id_digest,
        ),
        max_age=FLASH_SECONDS,
        path="/account/keys",
        httponly=True,
        samesite="strict",
        secure=web.secure(request),
    )
    return response


def _revoke_key(web: Web, session: SessionInfo, request: Request, key_id: str) -> None:
    admin = _admin(web, session, request)
    try:
        uuid.UUID(key_id)
    except ValueError:
        raise NotFound("no such key") from None
    record = admin.keys_show(key_id)
    if not _is_admin(session) and record["user_id"] != str(session.user_id):
        raise NotFound("no such key")
    admin.keys_revoke(key_id)


async def keys_revoke(web: Web, request: Request) -> Response:
    """POST /account/keys/revoke: revoke one of your keys (an admin: anyone's)."""
    posted = await _posted(web, request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    try:
        await web.db(_revoke_key, web, session, request, form.get("id", ""))
    except NotFound:
        return web.error("Not found", "There is no such key.", status=404, session=session)
    return see_other("/account/keys")


# -- usage ---------------------------------------------------------------------------------


def _usage(web: Web, session: SessionInfo, days: int) -> list[dict[str, Any]]:
    from llmgw.usage.reports import UsageFilter, usage_by_day_and_model

    only: UsageFilter = {} if _is_admin(session) else {"user_id": session.user_id}
    since = utcnow() - timedelta(days=days)
    from llmgw.usage.pricing import currency_of

    currencies = {p.name: currency_of(p) for p in web.gateway.live_settings.providers}
    return usage_by_day_and_model(web.engine, since=since, only=only, currencies=currencies)


async def usage_get(web: Web, request: Request) -> Response:
    """GET /account/usage?days=N: requests, tokens and cost per day and model."""
    session = await _signed_in(web, request)
    if isinstance(session, Response):
        return session
    text = request.query_params.get("days", "30")
    days = int(text) if text.isdigit() and int(text) in _DAYS else 30
    rows = await web.db(_usage, web, session, days)
    costs: dict[str, Decimal] = {}  # never added across currencies
    for r in rows:
        if r["currency"] is not None and r["cost"]:
            costs[r["currency"]] = costs.get(r["currency"], Decimal(0)) + r["cost"]
    total = {
        "requests": sum(r["requests"] for r in rows),
        "tokens": sum(r["total_tokens"] for r in rows),
        "cost": " + ".join(f"{v.normalize()} {c}" for c, v in sorted(costs.items())) or "0",
    }
    return web.page(
        "usage.html",
        me=session,
        nav="usage",
        rows=rows,
        days=days,
        total=total,
        everyone=_is_admin(session),
    )


# -- tokens and sessions -------------------------------------------------------------------


def _tokens(web: Web, session: SessionInfo) -> list[dict[str, Any]]:
    from llmgw.server.web.tokens import live_tokens

    return live_tokens(web, None if _is_admin(session) else session.user_id)


async def tokens_get(web: Web, request: Request) -> Response:
    """GET /account/tokens: live tokens and browser sessions (an admin: everyone's)."""
    session = await _signed_in(web, request)
    if isinstance(session, Response):
        return session
    tokens = await web.db(_tokens, web, session)
    sessions = await web.db(web.sessions.list, None if _is_admin(session) else session.user_id)
    return web.page(
        "tokens.html",
        me=session,
        nav="tokens",
        tokens=tokens,
        sessions=sessions,
        current=session.handle,
        everyone=_is_admin(session),
    )


async def tokens_revoke(web: Web, request: Request) -> Response:
    """POST /account/tokens/revoke: revoke one token by ``jti`` (yours; an admin: anyone's)."""
    from llmgw.server.web.tokens import revoke_token

    posted = await _posted(web, request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    jti = form.get("jti", "")[:64]
    owner = None if _is_admin(session) else session.user_id
    if not await web.db(revoke_token, web, jti, owner):
        return web.error("Not found", "There is no such token.", status=404, session=session)
    await web.audit(session, "tokens.revoke", jti)
    return see_other("/account/tokens")


async def sessions_revoke(web: Web, request: Request) -> Response:
    """POST /account/sessions/revoke: end a browser session (yours; an admin: anyone's)."""
    posted = await _posted(web, request)
    if isinstance(posted, Response):
        return posted
    session, form = posted
    handle = form.get("session", "")
    owner = None if _is_admin(session) else session.user_id
    if not await web.db(web.sessions.revoke_handle, handle, owner):
        return web.error("Not found", "There is no such session.", status=404, session=session)
    await web.audit(session, "sessions.revoke", handle)
    if handle == session.handle:
        response = see_other("/login")
        web.clear_session_cookie(response, request)
        return response
    return see_other("/account/tokens")


ACCOUNT_ROUTES = (
    ("/account", "GET", profile_get),
    ("/account/keys", "GET", keys_get),
    ("/account/keys", "POST", keys_post),
    ("/account/keys/revoke", "POST", keys_revoke),
    ("/account/usage", "GET", usage_get),
    ("/account/tokens", "GET", tokens_get),
    ("/account/tokens/revoke", "POST", tokens_revoke),
    ("/account/sessions/revoke", "POST", sessions_revoke),
)
