"""``GET/POST /oauth/authorize``: the authorization code flow's browser side (RFC 6749 §4.1
with PKCE S256 only, RFC 7636; RFC 9700; RFC 8252 for loopback redirects).

Order of checks (RFC 6749 §4.1.2.1): the client and its redirect URI first. While either is
unknown the answer is an error page and never a redirect (no open redirector). After that,
every problem (``unsupported_response_type``, ``invalid_request`` for a missing or ``plain``
PKCE challenge, ``invalid_scope``...) goes back to the validated redirect URI with ``state``.
Signed out: the sign-in page; signed in: the consent page, whose POST (CSRF-checked) answers
303 to the redirect URI with ``code`` and ``state``, or ``error=access_denied``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from llmgw.errors import LlmgwError, NotFound
from llmgw.identity.clients import ClientInfo, ClientService, redirect_uri_allowed
from llmgw.identity.codes import issue_code
from llmgw.identity.pkce import CHALLENGE_RE
from llmgw.identity.scopes import SCOPES, format_scope, parse_scope
from llmgw.server.web.core import BadForm, Web, see_other
from llmgw.server.web.login import login_page

__all__ = ["SCOPE_TEXT", "authorize_get", "authorize_post", "scope_items"]

SCOPE_TEXT = {
    "chat": "send chat and embedding requests through the gateway as you",
    "keys:self": "list, create and revoke your API keys",
    "usage:self": "read your usage and cost",
    "admin": "administer the gateway: every user, key, client and setting",
}
_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
_MAX_PARAM = 2000


def scope_items(scopes: frozenset[str] | set[str]) -> list[dict[str, str]]:
    """Scopes with their plain-language meaning, in ``SCOPES`` order."""
    return [{"name": s, "text": SCOPE_TEXT.get(s, s)} for s in SCOPES if s in scopes]


class _Refused(Exception):
    """An error to deliver to the validated redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True, slots=True)
class _Request:
    client: ClientInfo
    redirect_uri: str
    state: str | None
    params: dict[str, str]


def _error_redirect(redirect_uri: str, error: str, description: str, state: str | None) -> Response:
    query = {"error": error, "error_description": description}
    if state is not None:
        query["state"] = state
    sep = "&" if urlsplit(redirect_uri).query else "?"
    return see_other(redirect_uri + sep + urlencode(query))


async def _validate(web: Web, params: Mapping[str, str]) -> _Request | Response:
    """The checked request, or the page/redirect that refuses it."""
    client_id = params.get("client_id", "")
    redirect_uri = params.get("redirect_uri", "")
    client: ClientInfo | None = None
    if client_id and len(client_id) <= 64:
        try:
            client = await web.db(ClientService(web.engine).get, client_id)
        except NotFound:
            client = None
    if client is None or not client.active:
        return web.error(
            "Unknown application",
            "This sign-in link names an application that is not registered here. "
            "Nothing was shared; you can close this page.",
        )
    if not redirect_uri or not redirect_uri_allowed(client, redirect_uri):
        return web.error(
            "Invalid redirect address",
            f"The address {client.name} asked to return to is not one it registered. "
            "For your safety you were not sent there.",
        )
    state = params.get("state")
    request = _Request(client, redirect_uri, state, {k: params[k] for k in _PARAMS if k in params})
    try:
        _check(client, params)
    except _Refused as refused:
        return _error_redirect(redirect_uri, refused.error, refused.description, state)
    return request


def _check(client: ClientInfo, params: Mapping[str, str]) -> None:
    if any(len(v) > _MAX_PARAM for v in params.values()):
        raise _Refused("invalid_request", "a parameter is too long")
    if params.get("response_type") != "code":
        raise _Refused(
            "unsupported_response_type", "only response_type=code is supported (no implicit grant)"
        )
    if "authorization_code" not in client.grant_types:
        raise _Refused("unauthorized_client", "this client may not use the authorization code")
    challenge = params.get("code_challenge")
    if not challenge:
        raise _Refused("invalid_request", "PKCE is required: send code_challenge (S256)")
    if params.get("code_challenge_method") != "S256":
        raise _Refused("invalid_request", "code_challenge_method must be S256 (plain is refused)")
    if not CHALLENGE_RE.fullmatch(challenge):
        raise _Refused("invalid_request", "code_challenge must be 43 base64url characters")
    try:
        wanted = parse_scope(params.get("scope")) or frozenset(client.scopes)
    except LlmgwError as exc:
        raise _Refused("invalid_scope", exc.message) from None
    if not wanted <= set(client.scopes):
        raise _Refused("invalid_scope", "the client may not ask for this scope")


def _granted(req: _Request, role: str) -> tuple[frozenset[str], list[str]]:
    """The scopes the user can grant (an admin scope only for an admin) and those dropped."""
    wanted = parse_scope(req.params.get("scope")) or frozenset(req.client.scopes)
    dropped = sorted(s for s in wanted if s == "admin" and role != "admin")
    return wanted - set(dropped), dropped


def _origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _duplicates(request: Request) -> bool:
    names = [name for name, _ in request.query_params.multi_items()]
    return len(names) != len(set(names))


async def authorize_get(web: Web, request: Request) -> Response:
    """GET /oauth/authorize: validate, then sign-in or consent."""
    if _duplicates(request):
        return web.error("Invalid request", "A parameter was given more than once.")
    checked = await _validate(web, request.query_params)
    if isinstance(checked, Response):
        return checked
    session = await web.session(request)
    if session is None:
        return login_page(
            web,
            request,
            next_url=str(request.url.path) + "?" + request.url.query,
            client=checked.client.name,
        )
    granted, dropped = _granted(checked, session.role)
    if not granted:
        return _error_redirect(
            checked.redirect_uri,
            "invalid_scope",
            "no requested scope can be granted",
            checked.state,
        )
    return web.page(
        "consent.html",
        form_action=_origin_of(checked.redirect_uri),
        me=session,
        client=checked.client,
        scopes=scope_items(granted),
        dropped=dropped,
        redirect_uri=checked.redirect_uri,
        params=sorted(checked.params.items()),
    )


async def authorize_post(web: Web, request: Request) -> Response:
    """POST /oauth/authorize: the consent decision (CSRF-checked), answered with 303."""
    try:
        form = await web.form(request)
    except BadForm:
        return web.error("Invalid request", "The form could not be read.")
    session = await web.session(request)
    if session is None:
        return web.error(
            "Signed out",
            "Your session ended before you decided. Start again from the app.",
            status=401,
        )
    if not web.same_origin(request) or not web.csrf_ok(session.csrf_secret, form.get("csrf")):
        return web.error(
            "Forbidden",
            "This form has expired or came from another site; start again.",
            status=403,
            session=session,
        )
    checked = await _validate(web, form)
    if isinstance(checked, Response):
        return checked
    granted, _ = _granted(checked, session.role)
    decision = form.get("decision")
    if decision != "allow" or not granted:
        web.consents_total.labels("denied").inc()
        return _error_redirect(
            checked.redirect_uri, "access_denied", "the user denied the request", checked.state
        )
    code = await web.db(
        issue_code,
        web.engine,
        checked.client.client_id,
        session.user_id,
        checked.redirect_uri,
        format_scope(granted),
        checked.params["code_challenge"],
    )
    web.consents_total.labels("allowed").inc()
    await web.audit(
        session, "oauth.authorize", checked.client.client_id, scope=format_scope(granted)
    )
    query = {"code": code}
    if checked.state is not None:
        query["state"] = checked.state
    sep = "&" if urlsplit(checked.redirect_uri).query else "?"
    return see_other(checked.redirect_uri + sep + urlencode(query))
