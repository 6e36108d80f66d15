"""Authorization codes with PKCE S256: OAUTH-2 (verifier grammar, hypothesis), OAUTH-4 (reuse,
expiry), OAUTH-5 (redirect_uri at the token endpoint), C4 (another client)."""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo
from llmgw.errors import InvalidRequest
from llmgw.identity.clients import CLI_CLIENT_ID
from llmgw.identity.codes import CodeReused, issue_code, redeem_code
from llmgw.identity.errors import InvalidGrant, InvalidScope
from llmgw.identity.pkce import VERIFIER_RE, challenge_of, verifier_matches

from .conftest import Clock

REDIRECT = "http://127.0.0.1:49152/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_challenge_of_matches_rfc_7636_appendix_b() -> None:
    assert challenge_of(VERIFIER) == CHALLENGE
    s = hashlib.sha256(VERIFIER.encode()).digest()
    assert base64.urlsafe_b64encode(s).rstrip(b"=").decode() == CHALLENGE


def _issue(engine: Engine, user: UserInfo, clock: Clock, challenge: str = CHALLENGE) -> str:
    return issue_code(engine, CLI_CLIENT_ID, user.id, REDIRECT, "chat", challenge, clock=clock)


def _redeem(engine: Engine, code: str, clock: Clock, **kw: object) -> object:
    args: dict[str, object] = {
        "client_id": CLI_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    args.update(kw)
    return redeem_code(engine, code, clock=clock, **args)  # type: ignore[arg-type]


def test_a_code_is_redeemed_once_OAUTH_4(engine: Engine, alice: UserInfo, clock: Clock) -> None:
    code = _issue(engine, alice, clock)
    grant = redeem_code(
        engine,
        code,
        client_id=CLI_CLIENT_ID,
        redirect_uri=REDIRECT,
        code_verifier=VERIFIER,
        clock=clock,
    )
    assert grant.user_id == alice.id and grant.scope == "chat"
    with pytest.raises(CodeReused) as reused:
        _redeem(engine, code, clock)
    assert reused.value.family_id == grant.family_id  # the caller revokes what it issued
    assert reused.value.code == "invalid_grant"


def test_an_expired_code_is_invalid_OAUTH_4(engine: Engine, alice: UserInfo, clock: Clock) -> None:
    code = _issue(engine, alice, clock)
    clock.advance(61)
    with pytest.raises(InvalidGrant):
        _redeem(engine, code, clock)


def test_a_code_within_60_s_is_good(engine: Engine, alice: UserInfo, clock: Clock) -> None:
    code = _issue(engine, alice, clock)
    clock.advance(59)
    _redeem(engine, code, clock)


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "http://127.0.0.1:49153/callback"},  # OAUTH-5 at the token endpoint
        {"redirect_uri": None},
        {"client_id": "c_other"},  # C4
        {"code_verifier": VERIFIER[:-1] + "a"},  # P4
        {"code_verifier": None},
    ],
)
def test_a_mismatch_is_invalid_grant_and_burns_the_code(
    engine: Engine, alice: UserInfo, clock: Clock, change: dict[str, object]
) -> None:
    code = _issue(engine, alice, clock)
    with pytest.raises(InvalidGrant) as first:
        _redeem(engine, code, clock, **change)
    assert not isinstance(first.value, CodeReused)
    with pytest.raises(InvalidGrant):  # burned: the right values no longer work
        _redeem(engine, code, clock)


def test_unknown_and_garbage_codes(engine: Engine, clock: Clock) -> None:
    for code in ("", "x" * 500, "not-a-code"):
        with pytest.raises(InvalidGrant):
            _redeem(engine, code, clock)


@pytest.mark.parametrize("challenge", ["", "plain-text", "A" * 42, "A" * 44, "A" * 42 + "="])
def test_issue_code_takes_s256_challenges_only(
    engine: Engine, alice: UserInfo, clock: Clock, challenge: str
) -> None:
    with pytest.raises(InvalidRequest):
        _issue(engine, alice, clock, challenge)


def test_issue_code_refuses_unknown_scopes(engine: Engine, alice: UserInfo) -> None:
    with pytest.raises(InvalidScope):
        issue_code(engine, CLI_CLIENT_ID, alice.id, REDIRECT, "chat root", CHALLENGE)


def test_two_concurrent_redemptions_one_wins(engine: Engine, alice: UserInfo, clock: Clock) -> None:
    for _round in range(5):
        code = _issue(engine, alice, clock)
        results: list[str] = []
        barrier = threading.Barrier(2)

        def go(
            code: str = code,
            barrier: threading.Barrier = barrier,
            results: list[str] = results,
        ) -> None:
            barrier.wait()
            try:
                _redeem(engine, code, clock)
                results.append("ok")
            except InvalidGrant:
                results.append("invalid_grant")

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == ["invalid_grant", "ok"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9._~-]{38,133}", fullmatch=True))
def test_verifier_grammar_hypothesis_OAUTH_2(verifier: str) -> None:
    """success iff ^[A-Za-z0-9._~-]{43,128}$ and S256 matches (pure check, no database)."""
    well_formed = VERIFIER_RE.fullmatch(verifier) is not None
    if well_formed:
        assert verifier_matches(verifier, challenge_of(verifier))
    assert not verifier_matches(verifier, CHALLENGE) or verifier == VERIFIER
    # a verifier outside the grammar never passes, even against its own hash
    if not well_formed and verifier.isascii():
        assert not verifier_matches(verifier, challenge_of(verifier))


@pytest.mark.parametrize("length", [42, 43, 128, 129])
def test_verifier_length_bounds_at_the_token_step_OAUTH_2(
    engine: Engine, alice: UserInfo, clock: Clock, length: int
) -> None:
    verifier = ("abc-._~" * 30)[:length]
    code = _issue(engine, alice, clock, challenge_of(verifier))
    if 43 <= length <= 128:
        _redeem(engine, code, clock, code_verifier=verifier)
    else:
        with pytest.raises(InvalidGrant):
            _redeem(engine, code, clock, code_verifier=verifier)
