"""``GET/POST /device``: the verification page of the device flow (RFC 8628 §3.3).

Signed in, the user types (or follows a link with) the user code, sees which client asks for
which scopes with a warning against remote phishing (§5.3), then approves or denies. Wrong or
expired codes count against the address (``DEVICE_POLICY``): the user code has ~34.5 bits, so
guessing is throttled (§5.1) and answered with 429 while locked.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from llmgw.errors import NotFound
from llmgw.identity import device
from llmgw.identity.scopes import format_scope, parse_scope
from llmgw.identity.sessions import SessionInfo
from llmgw.identity.throttle import DEVICE_POLICY
from llmgw.server.web.authorize import scope_items
from llmgw.server.web.core import BadForm, Web, client_ip
from llmgw.server.web.login import login_page

__all__ = ["device_get", "device_post"]

UNKNOWN = "No device is waiting for this code. Check the code on the device; codes expire after 10 minutes."
NOTHING_GRANTABLE = "This device asks only for the admin scope, which your account does not hold. It was not connected."


def _key(ip: str) -> str:
    return "device:" + hashlib.sha256(ip.encode()).hexdigest()[:32]


def _shown(code: str) -> str:
    return device.format_user_code(device.normalize_user_code(code))


async def device_get(web: Web, request: Request) -> Response:
    """GET /device[?user_code=...]: the code form (sign in first)."""
    code = request.query_params.get("user_code", "")[:32]
    session = await web.session(request)
    if session is None:
        target = "/device" + (f"?user_code={_shown(code)}" if code else "")
        return login_page(web, request, next_url=target)
    return web.page("device.html", me=session, user_code=_shown(code) if code else "", error=None)


async def device_post(web: Web, request: Request) -> Response:
    """POST /device: look the code up, then approve or deny it."""
    try:
        form = await web.form(request)
    except BadForm:
        return web.error("Bad request", "The form could not be read.")
    session = await web.session(request)
    if session is None:
        return login_page(web, request, next_url="/device")
    if not web.same_origin(request) or not web.csrf_ok(session.csrf_secret, form.get("csrf")):
        return web.error(
            "Forbidden", "This form has expired; reload the page.", status=403, session=session
        )
    key = _key(client_ip(request))
    wait = await web.throttle.retry_after([key])
    code = form.get("user_code", "")[:32]
    if wait > 0:
        web.device_total.labels("throttled").inc()
        return _too_many(web, session, code, wait)
    waiting = await web.db(device.pending, web.engine, code)
    if waiting is None:
        web.device_total.labels("unknown").inc()
        lock = await web.throttle.failed([(key, DEVICE_POLICY)])
        if lock > 0:
            return _too_many(web, session, code, lock)
        return web.page("device.html", status=400, me=session, user_code=code, error=UNKNOWN)
    action = form.get("action", "lookup")
    granted = _grantable(waiting.scope, session.role)
    if not granted:  # it asked only for what this user may not hold (admin): nothing to approve
        action = "deny" if action == "approve" else action
        if action == "lookup":
            return web.page(
                "device.html", status=403, me=session, user_code=code, error=NOTHING_GRANTABLE
            )
    if action == "lookup":
        return web.page(
            "device_confirm.html",
            me=session,
            user_code=waiting.user_code,
            client=waiting.client_name,
            scopes=scope_items(granted),
        )
    scope = format_scope(granted)
    try:
        if action == "approve":
            # the scope shown, not the one asked for: a user who is not an admin approves
            # without the admin scope (the token endpoint narrows again by the role then)
            await web.db(device.approve, web.engine, code, session.user_id, scope=scope)
        else:
            await web.db(device.deny, web.engine, code)
    except NotFound:
        return web.page("device.html", status=400, me=session, user_code=code, error=UNKNOWN)
    approved = action == "approve"
    web.device_total.labels("approved" if approved else "denied").inc()
    await web.audit(
        session,
        "oauth.device_approve" if approved else "oauth.device_deny",
        waiting.client_id,
        scope=scope if approved else waiting.scope,
        requested=waiting.scope,
    )
    if approved:
        return web.page(
            "done.html",
            me=session,
            title="Device connected",
            message=f"{waiting.client_name} can now act as you. You can close this page.",
        )
    return web.page(
        "done.html",
        me=session,
        title="Request denied",
        message="The device was not connected. You can close this page.",
    )


def _too_many(web: Web, session: SessionInfo, code: str, wait: float) -> Response:
    seconds = max(1, round(wait))
    return web.page(
        "device.html",
        status=429,
        headers={"Retry-After": str(seconds)},
        me=session,
        user_code=code,
        error=f"Too many wrong codes. Try again in {seconds} s.",
    )


def _grantable(scope: str, role: str) -> frozenset[str]:
    scopes = parse_scope(scope)
    return scopes if role == "admin" else scopes - {"admin"}
