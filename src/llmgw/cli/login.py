"""``llmgw login``, ``llmgw logout``, ``llmgw whoami``: an OAuth login to an llmgw server.

The browser flow (authorization code + PKCE S256, RFC 8252 loopback redirect) or the device flow
(RFC 8628) gets an access token and a refresh token for the built-in public client
``llmgw-cli``; they are kept in the OS keyring (``cli/credentials.py``), refreshed when needed,
and used by every command given ``--url`` without ``--token``/``LLMGW_TOKEN``.

Exit codes: 0 done; 2 bad usage (no URL, a bad ``--scope``, no keyring backend and no
``--store-file``); 6 the login was refused, denied, expired or timed out, or there is no login
for that server; 8 the server answered something that is not OAuth; 9 the server cannot be
reached; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import webbrowser
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmgw.cli.credentials import (
    CredentialStore,
    StoredLogin,
    keyring_problem,
    normalise_url,
    not_logged_in,
)
from llmgw.cli.state import state
from llmgw.errors import AuthError, LlmgwError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from llmgw.cli.credentials import LoginAuth, Where
    from llmgw.cli.login_flows import OAuthClient, TokenSet

__all__ = ["auth_for", "login", "logout", "renew", "stored_auth", "whoami"]

BROWSER_TIMEOUT = 300.0
"""Default seconds ``llmgw login`` waits for the browser to come back."""


def _err(text: str) -> None:
    typer.echo(text, err=True)


def _store(ctx: typer.Context) -> CredentialStore:
    return CredentialStore(state(ctx).settings.home)


def _http() -> httpx.Client:
    import httpx

    # No proxy variables or .netrc behind the user's back; no redirects (a token endpoint that
    # redirects would carry the code or the refresh token elsewhere).
    return httpx.Client(trust_env=False, follow_redirects=False)


def _client(url: str, http: httpx.Client, login: StoredLogin | None = None) -> OAuthClient:
    from llmgw.cli.login_flows import CLIENT_ID, OAuthClient

    return OAuthClient(url, http, client_id=login.client_id if login else CLIENT_ID)


def _claims(token: str) -> dict[str, Any]:
    """The access token's claims, unverified: only shown to the user who holds the token (the
    server verifies it on every use)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _user_of(token: str) -> str | None:
    claims = _claims(token)
    for name in ("email", "preferred_username", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _identify(url: str, http: httpx.Client, tokens: TokenSet) -> str | None:
    """Who the token belongs to, by email: the admin API's ``whoami`` answers it for a token
    with the ``admin`` scope; otherwise the token's claims (``sub``, a user id) say."""
    import httpx

    if "admin" in tokens.scope.split():
        try:
            resp = http.get(
                f"{url}/admin/v1/whoami",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
                timeout=httpx.Timeout(10.0, connect=5.0),
            )
            actor = resp.json().get("actor") if resp.is_success else None
        except (httpx.HTTPError, ValueError, AttributeError):
            actor = None
        if isinstance(actor, str) and actor:
            return _printable(actor)[:320]
    return _user_of(tokens.access_token)


def _printable(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())


def _stored(
    url: str, client: OAuthClient, tokens: TokenSet, *, now: float, user: str | None
) -> StoredLogin:
    ends = client.endpoints
    return StoredLogin(
        url=url,
        client_id=client.client_id,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scope=tokens.scope,
        token_endpoint=ends.token_endpoint,
        revocation_endpoint=ends.revocation_endpoint,
        user=user,
        logged_in_at=now,
    )


def renew(login: StoredLogin) -> StoredLogin:
    """``login`` refreshed at its server (refresh-token rotation: the old one is spent)."""
    from llmgw.cli.login_flows import OAuthError

    if login.refresh_token is None:
        raise AuthError(
            f"the login to {login.url} has expired and cannot be refreshed",
            hint=f"run `llmgw login --url {login.url}` again",
        )
    with _http() as http:
        client = _client(login.url, http, login)
        try:
            tokens = client.refresh(login.refresh_token, token_endpoint=login.token_endpoint)
        except OAuthError as exc:
            raise AuthError(
                f"the login to {login.url} is no longer valid (the server said {exc.error})",
                hint=f"run `llmgw login --url {login.url}` again",
            ) from None
    return StoredLogin(
        url=login.url,
        client_id=login.client_id,
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=tokens.expires_at,
        scope=tokens.scope or login.scope,
        token_endpoint=login.token_endpoint,
        revocation_endpoint=login.revocation_endpoint,
        user=login.user or _user_of(tokens.access_token),
        logged_in_at=login.logged_in_at,
    )


def auth_for(store: CredentialStore, url: str) -> LoginAuth | None:
    """httpx authentication from the stored login for ``url`` (refreshing itself), or ``None``."""
    from llmgw.cli.credentials import LoginAuth

    key = normalise_url(url)
    login = store.load(key)
    return None if login is None else LoginAuth(store, login, renew)


def stored_auth(home: Path, url: str) -> LoginAuth | None:
    """The stored login for ``url`` under ``home`` as httpx authentication, or ``None`` (also for
    a URL that is not a server address: the caller reports that itself)."""
    try:
        return auth_for(CredentialStore(home), url)
    except UsageError:
        return None


def _url(ctx: typer.Context, url: str | None) -> str | None:
    given = url or state(ctx).url
    return normalise_url(given) if given else None


def _known_url(ctx: typer.Context, url: str | None, store: CredentialStore) -> str:
    """The server a logout/whoami is about: ``--url``, else the only stored login."""
    chosen = _url(ctx, url)
    if chosen is not None:
        return chosen
    known = sorted(store.index())
    if len(known) == 1:
        return known[0]
    if not known:
        raise AuthError("not logged in to any server", hint="run `llmgw login --url URL`")
    raise UsageError(
        f"logged in to {len(known)} servers; say which with --url",
        hint="one of: " + ", ".join(known),
        param="url",
    )


def _where(store_file: bool) -> Where:
    if store_file:
        return "file"
    problem = keyring_problem()
    if problem is None:
        return "keyring"
    raise UsageError(
        f"{problem}, so the login cannot be kept in it",
        hint="re-run with --store-file to keep it in $LLMGW_HOME/credentials.json (mode 0600)",
    )


def _open_browser(address: str, *, allowed: bool) -> bool:
    """Start the user's browser on ``address`` (``$BROWSER`` is honoured); whether there is one.

    The browser is started from a thread: a browser command that does not return at once (a
    text browser in this terminal, a ``$BROWSER`` script) must not keep the loopback listener
    from answering the redirect it is about to make.
    """
    if not allowed:
        return False
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False

    def start() -> None:
        with contextlib.suppress(Exception):  # a browser that fails: the URL is printed anyway
            browser.open(address)

    threading.Thread(target=start, name="llmgw-login-browser", daemon=True).start()
    return True


def _browser_flow(
    client: OAuthClient, scope: str | None, *, open_browser: bool, timeout: float
) -> TokenSet:
    from llmgw.cli.login_flows import OAuthError, challenge_of, make_state, make_verifier
    from llmgw.cli.loopback import LoopbackListener, LoopbackTimeout

    verifier, state_value = make_verifier(), make_state()
    with LoopbackListener(state_value) as listener:
        address = client.authorize_url(
            redirect_uri=listener.redirect_uri,
            state=state_value,
            challenge=challenge_of(verifier),
            scope=scope,
        )
        if _open_browser(address, allowed=open_browser):
            _err("Opening your browser to log in. If it does not open, visit:")
        else:
            _err("Open this address in a browser on this machine to log in:")
        _err(f"  {address}")
        _err(f"Waiting up to {timeout:g} s for the browser...")
        try:
            answer = listener.wait(timeout)
        except LoopbackTimeout as exc:
            extra = (
                f"; {exc.wrong_state} answer(s) with a wrong state were ignored"
                if exc.wrong_state
                else ""
            )
            raise AuthError(
                f"no answer from the browser within {timeout:g} s{extra}",
                hint="run `llmgw login` again (--device on a machine without a browser)",
            ) from None
    if answer.error is not None or answer.code is None:
        raise OAuthError(
            answer.error or "invalid_request",
            answer.error_description,
            hint="run `llmgw login` again"
            + (" and allow access" if answer.error == "access_denied" else ""),
        )
    return client.exchange_code(
        answer.code, redirect_uri=listener.redirect_uri, verifier=verifier, scope=scope
    )


def _device_flow(client: OAuthClient, scope: str | None) -> TokenSet:
    grant = client.device_start(scope)
    _err("To log in, open this address in any browser:")
    _err(f"  {grant.verification_uri}")
    _err(f"and enter the code: {grant.user_code}")
    if grant.verification_uri_complete:
        _err(f"(or open {grant.verification_uri_complete})")
    _err(f"Waiting for approval (the code expires in {grant.expires_in / 60:.0f} min)...")
    return client.device_poll(
        grant,
        scope=scope,
        on_slow_down=lambda every: _err(f"The server asked to poll less often: every {every:g} s."),
    )


def login(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="The llmgw server to log in to (else the global --url / LLMGW_URL).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        bool,
        typer.Option(
            "--device",
            help="Use the device flow: approve a short code from any browser (headless machines).",
        ),
    ] = False,
    store_file: Annotated[
        bool,
        typer.Option(
            "--store-file",
            help="Keep the tokens in $LLMGW_HOME/credentials.json (mode 0600) instead of the OS "
            "keyring (for machines without one).",
        ),
    ] = False,
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope",
            help="Scopes to ask for, e.g. 'chat keys:self' (default: what the server grants the "
            "CLI: chat, keys:self, usage:self, and admin for admins).",
            show_default=False,
        ),
    ] = None,
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="Print the login address instead of opening a browser."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=1, max=3600, help="Seconds to wait for the browser to come back."
        ),
    ] = BROWSER_TIMEOUT,
) -> None:
    """Log in to an llmgw server with your account (OAuth 2.0; the browser, or --device).

    The browser flow listens on a random 127.0.0.1 port for the redirect (authorization code with
    PKCE S256); --device prints a code to approve on the server's /device page from any browser.
    The tokens go to the OS keyring (or, with --store-file, a 0600 file), are refreshed
    automatically, and are used by every command given --url without --token (keys, users,
    usage, audit, dash). Exit codes: 2 no keyring and no --store-file; 6 refused, denied, expired
    or timed out; 9 the server cannot be reached.
    """
    from llmgw.cli.login_flows import check_scope

    base = _url(ctx, url)
    if base is None:
        raise UsageError(
            "which server? give --url URL (or set LLMGW_URL)",
            hint="e.g. llmgw login --url https://llmgw.example.com",
            param="url",
        )
    wanted = check_scope(scope)
    where = _where(store_file)  # before any flow: a login that cannot be kept is not started
    store = _store(ctx)
    with _http() as http:
        client = _client(base, http)
        tokens = (
            _device_flow(client, wanted)
            if device
            else _browser_flow(client, wanted, open_browser=not no_browser, timeout=timeout)
        )
        stored = _stored(base, client, tokens, now=time.time(), user=_identify(base, http, tokens))
    previous = _previous(store, base)
    if previous is not None and store.where(base) != where:
        store.forget(base)  # moving between the keyring and the file: no stale copy left behind
    store.save(stored, where)
    if previous is not None and previous.refresh_token:
        _revoke_quietly(previous)  # the replaced login should not stay valid at the server
    kept = "the OS keyring" if where == "keyring" else f"{store.file} (mode 0600)"
    who = f" as {stored.user}" if stored.user else ""
    typer.echo(f"Logged in to {base}{who} (scope: {stored.scope or '-'}); tokens kept in {kept}.")


def _previous(store: CredentialStore, url: str) -> StoredLogin | None:
    try:
        return store.load(url)
    except LlmgwError:  # a damaged or unreadable old entry is simply replaced
        return None


def _revoke_quietly(login: StoredLogin) -> None:
    """Best effort: revoke a replaced login's refresh token (its family with it)."""
    assert login.refresh_token is not None
    with _http() as http, contextlib.suppress(LlmgwError):
        _client(login.url, http, login).revoke(
            login.refresh_token, "refresh_token", revocation_endpoint=login.revocation_endpoint
        )


def logout(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="The server to log out of (else the global --url / LLMGW_URL, else the only "
            "stored login).",
            show_default=False,
        ),
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Only forget the tokens here, without telling the server (when it cannot be "
            "reached); they stay valid there until they expire.",
        ),
    ] = False,
) -> None:
    """Log out: revoke the stored tokens at the server, then forget them here.

    The server revokes the refresh token's whole family and puts the access token on its
    deny-list, so every instance refuses both within 1 s. When the server cannot be reached
    nothing is forgotten (exit 9); --local forgets without revoking.
    """
    from llmgw.cli.login_flows import OAuthError

    store = _store(ctx)
    base = _known_url(ctx, url, store)
    current = store.load(base)
    if current is None:
        store.forget(base)
        raise not_logged_in(base)
    if not local:
        with _http() as http:
            client = _client(base, http, current)
            try:
                if current.refresh_token is not None:
                    client.revoke(
                        current.refresh_token,
                        "refresh_token",
                        revocation_endpoint=current.revocation_endpoint,
                    )
                client.revoke(
                    current.access_token,
                    "access_token",
                    revocation_endpoint=current.revocation_endpoint,
                )
            except OAuthError as exc:
                exc.hint = "the tokens were kept; `llmgw logout --local` forgets them anyway"
                raise
    store.forget(base)
    told = "forgotten here only (not revoked at the server)" if local else "revoked and forgotten"
    typer.echo(f"Logged out of {base}: tokens {told}.")


def _row(url: str, entry: dict[str, Any], login: StoredLogin | None) -> dict[str, Any]:
    from datetime import UTC, datetime

    def iso(ts: float | None) -> str | None:
        return None if not ts else datetime.fromtimestamp(ts, UTC).isoformat()

    claims = _claims(login.access_token) if login else {}
    return {
        "url": url,
        "user": (login.user if login else None) or entry.get("user"),
        "sub": claims.get("sub"),
        "client_id": (login.client_id if login else None) or entry.get("client_id"),
        "scope": (login.scope if login else None) or entry.get("scope"),
        "store": entry.get("store"),
        "logged_in_at": iso(login.logged_in_at if login else entry.get("logged_in_at")),
        "access_expires_at": iso(login.expires_at) if login else None,
        "refreshable": bool(login and login.refresh_token),
    }


def whoami(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Only the login for this server (else the global --url / LLMGW_URL; else all).",
            show_default=False,
        ),
    ] = None,
    print_token: Annotated[
        bool,
        typer.Option(
            "--print-token",
            help="Print only a valid access token (refreshed when needed), for "
            'curl -H "Authorization: Bearer $(llmgw whoami --print-token)".',
        ),
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show who you are logged in as, on which servers, with which scopes, until when.

    With --print-token, print a valid access token for the one server (refreshing it at the
    server when it is about to expire). Exit 6 when there is no login.
    """
    store = _store(ctx)
    chosen = _url(ctx, url)
    index = store.index()
    if print_token:
        base = _known_url(ctx, url, store)
        auth = auth_for(store, base)
        if auth is None:
            raise not_logged_in(base)
        sys.stdout.write(auth.token() + "\n")
        return
    urls = [chosen] if chosen is not None else sorted(index)
    rows = []
    for u in urls:
        entry = index.get(u)
        if entry is None:
            continue
        rows.append(_row(u, entry, store.load(u)))
    if chosen is not None and not rows:
        raise not_logged_in(chosen)
    if json:
        from llmgw.cli.output import emit_json

        emit_json(rows)
    if not rows:  # exit 6 with --json too (after printing []): scripts test the exit status
        raise AuthError("not logged in to any server", hint="run `llmgw login --url URL`")
    if json:
        return
    from llmgw.cli.output import print_table, when_text

    print_table(
        [
            {
                **r,
                "logged_in_at": when_text(r["logged_in_at"]),
                "access_expires_at": when_text(r["access_expires_at"]),
            }
            for r in rows
        ],
        ["url", "user", "scope", "store", "logged_in_at", "access_expires_at"],
        title="logins",
        wrap=("scope",),
        optional=("logged_in_at", "store"),
    )
