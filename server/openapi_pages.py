"""The web pages in the OpenAPI document (tag ``Pages``): HTML for browsers, listed so the route
table and the document stay equal (no shadow endpoints). Forms are url-encoded; a signed-in
page needs the ``llmgw_session`` cookie (not a bearer token), so ``security`` is empty and the
sign-in redirect is documented instead of a 401. docs/auth.md describes the pages.
"""

from __future__ import annotations

from typing import Any

__all__ = ["page_paths"]

_FORM = "application/x-www-form-urlencoded"
_HTML_OK = '<!doctype html><html lang="en">…</html>'
_CSRF = "Vc2pjDj-SKlEdytjOzwukee-iAwQ_VXgfKfZgeFnat8"


def _html(description: str, example: str = _HTML_OK) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"text/html": {"schema": {"type": "string"}, "example": example}},
    }


def _see_other(description: str) -> dict[str, Any]:
    return {"description": description, "headers": {"Location": {"schema": {"type": "string"}}}}


def _op(
    op_id: str,
    summary: str,
    description: str,
    responses: dict[str, Any],
    *,
    form: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["Pages"],
        "security": [],
        "responses": responses,
    }
    if form is not None:
        op["requestBody"] = {
            "required": True,
            "content": {_FORM: {"schema": {"type": "object"}, "example": form}},
        }
    if parameters:
        op["parameters"] = parameters
    return op


def _query(name: str, example: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "example": example,
        "description": description,
    }


def _alert_param() -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "example": "42",
        "description": "The occurrence's id (`/alerts` links to it).",
    }


_SIGN_IN = _see_other("Signed out: to `/login?next=...`.")
_NOT_ADMIN = _html("Signed in without the admin role: the dashboard is for admins.")
_FORBIDDEN = _html("The CSRF token is missing or wrong, or the form came from another site.")


def page_paths() -> dict[str, Any]:
    """The pages' path items."""
    authorize_params = [
        _query("client_id", "llmgw-cli", "A registered client."),
        _query(
            "redirect_uri",
            "http://127.0.0.1:49152/callback",
            "Registered exactly (loopback: any port).",
        ),
        _query("response_type", "code", "Only `code`."),
        _query("scope", "chat keys:self", "Space-separated scopes; default: the client's."),
        _query("state", "af0ifjsldkj", "Echoed to the redirect URI."),
        _query(
            "code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "PKCE S256 challenge."
        ),
        _query("code_challenge_method", "S256", "Only `S256`."),
    ]
    consent_form = {
        "csrf": _CSRF,
        "decision": "allow",
        "client_id": "llmgw-cli",
        "redirect_uri": "http://127.0.0.1:49152/callback",
        "response_type": "code",
        "scope": "chat keys:self",
        "state": "af0ifjsldkj",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    return {
        "/login": {
            "get": _op(
                "loginPage",
                "The sign-in page",
                "Email and password form (sets the double-submit CSRF cookie); signed in: 303 to `next`.",
                {"200": _html("The form."), "303": _see_other("Already signed in.")},
                parameters=[_query("next", "/account", "A page path to return to.")],
            ),
            "post": _op(
                "login",
                "Sign in",
                "Checks CSRF and the throttle, then the password (one argon2 verification on every path); "
                "303 to `next` with a new session cookie.",
                {
                    "303": _see_other("Signed in."),
                    "401": _html("Wrong email or password (the same answer for every cause)."),
                    "403": _FORBIDDEN,
                    "429": _html("Too many failed attempts from this address (`Retry-After`)."),
                },
                form={
                    "csrf": _CSRF,
                    "next": "/account",
                    "email": "ann@example.com",
                    "password": "••••••••••",
                },
            ),
        },
        "/logout": {
            "post": _op(
                "logout",
                "Sign out",
                "Ends the browser session.",
                {"303": _see_other("To `/login`."), "403": _FORBIDDEN},
                form={"csrf": _CSRF},
            )
        },
        "/oauth/authorize": {
            "get": _op(
                "authorizePage",
                "Authorization request (sign-in, then consent)",
                "Client and redirect URI are checked first (an error page, never a redirect, while either "
                "is wrong); other errors go to the redirect URI with `state`. Signed out: the sign-in "
                "page; signed in: the consent page.",
                {
                    "200": _html("The sign-in or consent page."),
                    "303": _see_other(
                        "An error (`error`, `error_description`, `state`) at the redirect URI."
                    ),
                    "400": _html("Unknown client or redirect URI not registered: no redirect."),
                },
                parameters=authorize_params,
            ),
            "post": _op(
                "authorize",
                "Consent decision",
                "Allow: 303 to the redirect URI with `code` and `state`; deny: `error=access_denied`.",
                {
                    "303": _see_other("Back to the client."),
                    "400": _html("Unknown client or redirect URI."),
                    "401": _html("Signed out before deciding."),
                    "403": _FORBIDDEN,
                },
                form=consent_form,
            ),
        },
        "/device": {
            "get": _op(
                "devicePage",
                "Device verification page",
                "Enter the user code shown by `llmgw login --device` (RFC 8628 §3.3); signed out: the sign-in page.",
                {"200": _html("The code form (or the sign-in page).")},
                parameters=[
                    _query("user_code", "BCDF-GHJK", "Pre-filled code (verification_uri_complete).")
                ],
            ),
            "post": _op(
                "deviceVerify",
                "Look up, approve or deny a user code",
                "`action` is `lookup` (shows the client and scopes), `approve` or `deny`. Wrong codes are "
                "throttled per address.",
                {
                    "200": _html("The confirmation or the result."),
                    "400": _html("No device is waiting for this code."),
                    "403": _FORBIDDEN,
                    "429": _html("Too many wrong codes from this address (`Retry-After`)."),
                },
                form={"csrf": _CSRF, "user_code": "BCDF-GHJK", "action": "lookup"},
            ),
        },
        "/account": {
            "get": _op(
                "accountPage",
                "Profile",
                "The signed-in user's profile; an admin also sees every user.",
                {"200": _html("The profile."), "303": _SIGN_IN},
            )
        },
        "/account/keys": {
            "get": _op(
                "accountKeys",
                "Your API keys",
                "Your keys (an admin: everyone's) with create and revoke forms.",
                {"200": _html("The keys."), "303": _SIGN_IN},
            ),
            "post": _op(
                "accountKeyCreate",
                "Create an API key",
                "Creates a key for yourself; its secret is on this answer only (`Cache-Control: no-store`).",
                {
                    "200": _html("The keys with the new secret."),
                    "400": _html("Bad name or expiry."),
                    "403": _FORBIDDEN,
                },
                form={"csrf": _CSRF, "name": "laptop", "expires": "90"},
            ),
        },
        "/account/keys/revoke": {
            "post": _op(
                "accountKeyRevoke",
                "Revoke an API key",
                "Yours (an admin: anyone's); someone else's is 404.",
                {
                    "303": _see_other("Back to the keys."),
                    "403": _FORBIDDEN,
                    "404": _html("No such key."),
                },
                form={"csrf": _CSRF, "id": "0b3c2f5e-8a1d-4a57-9d77-2f0c6b1e9a42"},
            ),
        },
        "/account/usage": {
            "get": _op(
                "accountUsage",
                "Your usage and cost",
                "Requests, errors, tokens and cost per UTC day and model (an admin: everyone's).",
                {"200": _html("The table."), "303": _SIGN_IN},
                parameters=[_query("days", "30", "1, 7, 30 or 90.")],
            )
        },
        "/account/tokens": {
            "get": _op(
                "accountTokens",
                "Your tokens and sessions",
                "Live access tokens, personal access tokens and browser sessions, with revoke buttons.",
                {"200": _html("The lists."), "303": _SIGN_IN},
            )
        },
        "/account/tokens/revoke": {
            "post": _op(
                "accountTokenRevoke",
                "Revoke a token",
                "By `jti`; an access token revokes its whole grant.",
                {
                    "303": _see_other("Back to the list."),
                    "403": _FORBIDDEN,
                    "404": _html("No such token."),
                },
                form={"csrf": _CSRF, "jti": "5f0e6c1d2b3a49788796a5b4c3d2e1f0"},
            ),
        },
        "/account/sessions/revoke": {
            "post": _op(
                "accountSessionRevoke",
                "End a browser session",
                "By the 16-digit handle the list shows.",
                {
                    "303": _see_other("Back to the list (or to sign-in for your own)."),
                    "403": _FORBIDDEN,
                    "404": _html("No such session."),
                },
                form={"csrf": _CSRF, "session": "3f2a9c0d1e4b5a67"},
            ),
        },
        **_alert_pages(),
        "/static/llmgw.css": {
            "get": _op(
                "pagesStylesheet",
                "The pages' stylesheet",
                "One CSS file, cached for an hour.",
                {
                    "200": {
                        "description": "CSS.",
                        "content": {
                            "text/css": {"schema": {"type": "string"}, "example": ":root { … }"}
                        },
                    }
                },
            )
        },
    }


def _alert_change(op_id: str, summary: str, description: str, form: dict[str, str]) -> Any:
    return {
        "post": {
            **_op(
                op_id,
                summary,
                description + " Audited with source `web`.",
                {
                    "303": _see_other("Back to `/alerts/{id}#actions`."),
                    "400": _html("The note is empty (a note is required)."),
                    "403": _html("Not an admin, or the CSRF token is missing or wrong."),
                    "404": _html("No such alert, or alerts are off."),
                },
                form=form,
            ),
            "parameters": [_alert_param()],
        }
    }


def _alert_pages() -> dict[str, Any]:
    """The alert dashboard (docs/alerts.md#dashboard): admins only."""
    filters = [
        _query("status", "firing", "`firing` or `resolved`."),
        _query("severity", "critical", "The `severity` label."),
        _query("category", "capacity", "The classification's category."),
        _query("q", "job=node", "Text in the name, labels (`key=value`) or annotations."),
        _query("range", "24h", "`1h`, `6h`, `24h` (default), `7d` or `30d`."),
        _query("from", "2026-12-01T08:00", "Start of a custom period (UTC, `datetime-local`)."),
        _query("to", "2026-12-01T20:00", "End of a custom period (UTC)."),
        _query("acked", "no", "`yes` or `no`."),
        _query("flapping", "1", "`1`: flapping alerts only."),
        _query("source", "llmgw", "`alertmanager` or `llmgw` (the gateway's breaker events)."),
        _query("cursor", "MjAyNi0xMi0wMVQxMjowMDowMCswMDowMHw0Mg", "The Older link's position."),
    ]
    return {
        "/alerts": {
            "get": _op(
                "alertsPage",
                "The alert dashboard",
                "The live list with filters, counts by status and severity, alerts started per "
                "hour or day (inline SVG) and by category. Refreshes itself every 15 s with "
                "`/static/alerts.js`.",
                {
                    "200": _html("The dashboard."),
                    "303": _SIGN_IN,
                    "400": _html("A filter is invalid (the page says which)."),
                    "403": _NOT_ADMIN,
                    "404": _html("Alerts are off (`alerts.enabled = false`)."),
                },
                parameters=filters,
            )
        },
        "/alerts/{id}": {
            "get": {
                **_op(
                    "alertPage",
                    "One alert",
                    "Labels, annotations, the AI classification (marked as AI-generated), the "
                    "timeline, the label set's occurrences and the raw delivery, with the "
                    "acknowledge, note and re-classify forms.",
                    {
                        "200": _html("The alert."),
                        "303": _SIGN_IN,
                        "403": _NOT_ADMIN,
                        "404": _html("No such alert."),
                    },
                ),
                "parameters": [_alert_param()],
            }
        },
        "/alerts/{id}/ack": _alert_change(
            "alertAck",
            "Acknowledge an alert",
            "The first acknowledgement's time and person stay; an optional note.",
            {"csrf": _CSRF, "note": "on it"},
        ),
        "/alerts/{id}/note": _alert_change(
            "alertNote",
            "Set an alert's note",
            "The timeline keeps every earlier note.",
            {"csrf": _CSRF, "note": "caused by the nightly batch job"},
        ),
        "/alerts/{id}/reclassify": _alert_change(
            "alertReclassify",
            "Re-classify an alert",
            "Queues a fresh classification (the cache is bypassed).",
            {"csrf": _CSRF},
        ),
        "/static/alerts.js": {
            "get": _op(
                "alertsScript",
                "The dashboard's live refresh",
                "The pages' one script, cached for an hour.",
                {
                    "200": {
                        "description": "JavaScript.",
                        "content": {
                            "text/javascript": {
                                "schema": {"type": "string"},
                                "example": "(function () { … })();",
                            }
                        },
                    }
                },
            )
        },
    }
