"""The client side of ``llmgw login``: PKCE values (RFC 7636) and the loopback redirect listener
(RFC 8252 §7.3/§8.3) driven by real HTTP requests on 127.0.0.1. Ids: OAUTH-1 and OAUTH-2 from the
client's side (S256 only, verifiers of the unreserved alphabet and 43 characters), OAUTH-6 (the
redirect URI is the 127.0.0.1 literal with a random port, never ``localhost``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmgw.cli import loopback
from llmgw.cli.login_flows import (
    Endpoints,
    OAuthClient,
    challenge_of,
    check_scope,
    make_state,
    make_verifier,
)
from llmgw.cli.loopback import CALLBACK_PATH, LoopbackListener, LoopbackTimeout
from llmgw.errors import UsageError

VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def test_oauth2_verifier_is_43_unreserved_characters_and_never_repeats() -> None:
    """OAUTH-2 (client side): 32 random bytes -> 43 characters of the unreserved set."""
    seen = {make_verifier() for _ in range(200)}
    assert len(seen) == 200
    assert all(VERIFIER.fullmatch(v) and len(v) == 43 for v in seen)


def test_oauth1_challenge_is_s256_of_the_rfc_7636_appendix_b_example() -> None:
    """OAUTH-1 (client side): the challenge is S256, checked against RFC 7636 Appendix B."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert challenge_of(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~",
        min_size=43,
        max_size=128,
    )
)
def test_challenge_is_unpadded_base64url_of_the_sha256(verifier: str) -> None:
    """For any valid verifier: 43 characters, no padding, decodes to SHA-256(verifier)."""
    challenge = challenge_of(verifier)
    assert len(challenge) == 43 and "=" not in challenge
    assert base64.urlsafe_b64decode(challenge + "=") == hashlib.sha256(verifier.encode()).digest()


def test_authorize_url_asks_for_s256_and_names_the_loopback_redirect() -> None:
    """OAUTH-1/OAUTH-6 (client side): code flow, S256 (never plain), state, 127.0.0.1 redirect."""
    with httpx.Client() as http:
        client = OAuthClient(
            "https://gw.example", http, endpoints=Endpoints.default("https://gw.example")
        )
        with LoopbackListener("s1") as lsn:
            url = client.authorize_url(
                redirect_uri=lsn.redirect_uri, state="s1", challenge="c" * 43, scope="chat admin"
            )
            port = lsn.port
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "gw.example", "/oauth/authorize")
    assert q == {
        "response_type": "code",
        "client_id": "llmgw-cli",
        "redirect_uri": f"http://127.0.0.1:{port}/callback",
        "state": "s1",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        "scope": "chat admin",
    }
    assert 1024 < port < 65536


def test_state_values_are_unguessable_and_distinct() -> None:
    states = {make_state() for _ in range(100)}
    assert len(states) == 100 and all(len(s) >= 32 for s in states)


@pytest.mark.parametrize(
    ("given", "want"),
    [("chat", "chat"), ("chat,admin", "chat admin"), (" chat  chat keys:self ", "chat keys:self")],
)
def test_scope_flag_is_normalised(given: str, want: str) -> None:
    assert check_scope(given) == want


@pytest.mark.parametrize("bad", ["", " ", "ch\x00t", "ch@t", "a;b", "é"])
def test_a_bad_scope_flag_is_refused(bad: str) -> None:
    with pytest.raises(UsageError):
        check_scope(bad)


# -- the loopback listener ---------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    with LoopbackListener("the-state") as lsn:
        yield lsn


def _later(fn: Callable[[], None], delay: float = 0.05) -> threading.Thread:
    """Run ``fn`` in a thread after ``delay`` s (the listener serves in the test's thread)."""

    def run() -> None:
        time.sleep(delay)
        fn()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _get(url: str, answers: list[httpx.Response], **kw: object) -> Callable[[], None]:
    def go() -> None:
        answers.append(httpx.get(url, timeout=5, **kw))  # type: ignore[arg-type]

    return go


def test_the_listener_is_on_127_0_0_1_only(listener: LoopbackListener) -> None:
    """RFC 8252 §8.3: the IP literal, never localhost, never a public interface."""
    assert listener.redirect_uri.startswith("http://127.0.0.1:")
    assert listener._server.server_address[0] == "127.0.0.1"
    other = socket.gethostbyname(socket.gethostname())
    if other != "127.0.0.1" and not other.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((other, listener.port), timeout=1):
            pass


def test_right_state_and_code_complete_the_login(listener: LoopbackListener) -> None:
    answers: list[httpx.Response] = []
    t = _later(_get(f"{listener.redirect_uri}?code=abc&state=the-state", answers))
    got = listener.wait(5)
    t.join(5)
    assert got.code == "abc" and got.error is None
    assert answers[0].status_code == 200
    assert "You can close this tab" in answers[0].text
    assert answers[0].headers["cache-control"] == "no-store"
    assert answers[0].headers["referrer-policy"] == "no-referrer"
    assert "abc" not in repr(got)


def test_a_wrong_state_is_refused_and_ignored_then_the_right_one_completes(
    listener: LoopbackListener,
) -> None:
    """A redirect with a wrong or missing state (CSRF, RFC 6749 §10.12) neither completes nor
    aborts the login: 400 to that browser, the login waits for its own."""
    answers: list[httpx.Response] = []

    def both() -> None:
        _get(f"{listener.redirect_uri}?code=evil&state=other", answers)()
        _get(f"{listener.redirect_uri}?code=evil2", answers)()
        _get(f"{listener.redirect_uri}?code=evil3&state=the-state&state=x", answers)()
        _get(f"{listener.redirect_uri}?code=good&state=the-state", answers)()

    t = _later(both)
    got = listener.wait(5)
    t.join(5)
    assert got.code == "good"
    assert [a.status_code for a in answers] == [400, 400, 400, 200]
    assert listener.wrong_state == 3
    assert "does not belong" in answers[0].text


def test_an_error_redirect_with_the_right_state_ends_the_wait(listener: LoopbackListener) -> None:
    answers: list[httpx.Response] = []
    t = _later(
        _get(
            f"{listener.redirect_uri}?error=access_denied&error_description=no%20thanks"
            "&state=the-state",
            answers,
        )
    )
    got = listener.wait(5)
    t.join(5)
    assert (got.code, got.error, got.error_description) == (None, "access_denied", "no thanks")
    assert "access_denied" in answers[0].text


def test_a_redirect_without_code_is_an_invalid_request(listener: LoopbackListener) -> None:
    answers: list[httpx.Response] = []
    t = _later(_get(f"{listener.redirect_uri}?state=the-state", answers))
    got = listener.wait(5)
    t.join(5)
    assert got.error == "invalid_request" and answers[0].status_code == 400


def test_the_error_page_escapes_what_the_redirect_carried(listener: LoopbackListener) -> None:
    answers: list[httpx.Response] = []
    t = _later(_get(f"{listener.redirect_uri}?error=%3Cscript%3E&state=the-state", answers))
    listener.wait(5)
    t.join(5)
    assert "<script>" not in answers[0].text and "&lt;script&gt;" in answers[0].text


def test_other_paths_and_methods_do_not_count(listener: LoopbackListener) -> None:
    answers: list[httpx.Response] = []

    def go() -> None:
        base = f"http://127.0.0.1:{listener.port}"
        answers.append(httpx.get(f"{base}/favicon.ico", timeout=5))
        answers.append(httpx.post(f"{base}{CALLBACK_PATH}?code=x&state=the-state", timeout=5))
        answers.append(httpx.get(f"{base}{CALLBACK_PATH}?code=ok&state=the-state", timeout=5))

    t = _later(go)
    got = listener.wait(5)
    t.join(5)
    assert [a.status_code for a in answers] == [404, 405, 200]
    assert got.code == "ok"


def test_no_answer_times_out_within_the_bound_and_counts_wrong_states(
    listener: LoopbackListener,
) -> None:
    answers: list[httpx.Response] = []
    t = _later(_get(f"{listener.redirect_uri}?code=x&state=nope", answers))
    start = time.monotonic()
    with pytest.raises(LoopbackTimeout) as caught:
        listener.wait(0.8)
    took = time.monotonic() - start
    t.join(5)
    assert 0.8 <= took < 2.0
    assert caught.value.wrong_state == 1


def test_a_silent_connection_cannot_hold_the_login(
    listener: LoopbackListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that connects and sends nothing is cut off after the read timeout; the real
    redirect that follows still completes the login."""
    monkeypatch.setattr(loopback._Handler, "timeout", 0.3)
    answers: list[httpx.Response] = []
    silent = socket.create_connection(("127.0.0.1", listener.port))
    try:
        t = _later(_get(f"{listener.redirect_uri}?code=ok&state=the-state", answers), delay=0.1)
        start = time.monotonic()
        got = listener.wait(5)
        t.join(5)
    finally:
        silent.close()
    assert got.code == "ok" and time.monotonic() - start < 3
