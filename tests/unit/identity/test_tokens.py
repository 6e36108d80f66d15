"""TokenService: access JWTs, refresh rotation and reuse (OAUTH-8), revocation (OAUTH-9/10),
personal access tokens, and the verifier's rules (JWT-1..5)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from llmgw.auth.changes import AuthChange
from llmgw.auth.users import UserInfo, UserService
from llmgw.errors import AuthError, ConfigError, UsageError
from llmgw.identity.clients import CLI_CLIENT_ID
from llmgw.identity.errors import InvalidGrant, InvalidScope
from llmgw.identity.signing import SigningKeys, load_secret
from llmgw.identity.tokens import TokenService, jti_key_id

from .conftest import ISSUER, Clock


def _b64(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(tokens: TokenService, **over: Any) -> dict[str, Any]:
    issued = tokens.issue(client_id=CLI_CLIENT_ID, user_id=None, scope="chat", refresh=False)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(tokens: TokenService, claims: dict[str, Any], **headers: Any) -> str:
    """A JWT with exactly these claims and headers, signed with the service's current key."""
    kid, key = tokens.keys.signer()
    head = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    head.update(headers)
    head = {k: v for k, v in head.items() if v is not None}
    signing_input = _b64(head) + "." + _b64(claims)
    sig = key.sign(signing_input.encode())
    return signing_input + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


def test_an_access_token_is_an_rfc_9068_jwt(tokens: TokenService, alice: UserInfo) -> None:
    issued = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat usage:self")
    header = jwt.get_unverified_header(issued.access_token)
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt" and header["kid"]
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == "llmgw"
    assert claims["sub"] == str(alice.id) and claims["client_id"] == CLI_CLIENT_ID
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"] == issued.jti
    assert issued.refresh_token is not None and issued.refresh_token.startswith("llmgw_rt_")
    who = tokens.verify(issued.access_token)
    assert who.user_id == alice.id and who.email == alice.email and who.via == "jwt"
    assert who.scopes == {"chat", "usage:self"} and who.client_id == CLI_CLIENT_ID
    body = issued.as_response()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert issued.access_token not in repr(issued)


def test_refresh_rotates_and_reuse_revokes_the_family_OAUTH_8(
    tokens: TokenService, alice: UserInfo
) -> None:
    changes: list[AuthChange] = []
    tokens._on_change = changes.append
    first = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat admin")
    assert first.refresh_token is not None
    second = tokens.refresh(first.refresh_token, client_id=CLI_CLIENT_ID, scope=None)
    assert second.refresh_token not in (None, first.refresh_token)
    assert second.scope == "chat admin"
    tokens.verify(second.access_token)
    with pytest.raises(InvalidGrant):
        tokens.refresh(first.refresh_token, client_id=CLI_CLIENT_ID, scope=None)
    for t in (first.access_token, second.access_token):  # the whole grant
        with pytest.raises(AuthError):
            tokens.verify(t)
    with pytest.raises(InvalidGrant):  # RT2 is revoked too
        tokens.refresh(second.refresh_token or "", client_id=CLI_CLIENT_ID, scope=None)
    revoked = {k for c in changes for k in c.keys}
    assert {jti_key_id(first.jti), jti_key_id(second.jti)} <= revoked


def test_refresh_client_binding_and_scope_OAUTH_8(tokens: TokenService, alice: UserInfo) -> None:
    first = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    rt = first.refresh_token or ""
    with pytest.raises(InvalidGrant):
        tokens.refresh(rt, client_id="c_other", scope=None)
    with pytest.raises(InvalidScope):
        tokens.refresh(rt, client_id=CLI_CLIENT_ID, scope="chat admin")
    narrowed = tokens.refresh(rt, client_id=CLI_CLIENT_ID, scope="chat")
    assert narrowed.scope == "chat"


def test_refresh_expired_and_garbage(tokens: TokenService, alice: UserInfo, clock: Clock) -> None:
    first = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    for bad in ("", "x" * 300, "llmgw_rt_nope"):
        with pytest.raises(InvalidGrant):
            tokens.refresh(bad, client_id=CLI_CLIENT_ID, scope=None)
    clock.advance(31 * 86400)
    with pytest.raises(InvalidGrant):
        tokens.refresh(first.refresh_token or "", client_id=CLI_CLIENT_ID, scope=None)


def test_concurrent_refreshes_exactly_one_wins_OAUTH_8(
    tokens: TokenService, alice: UserInfo
) -> None:
    for _round in range(5):
        rt = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat").refresh_token
        results: list[Any] = []
        barrier = threading.Barrier(2)

        def go(
            rt: str = rt or "", barrier: threading.Barrier = barrier, results: list[Any] = results
        ) -> None:
            barrier.wait()
            try:
                results.append(tokens.refresh(rt, client_id=CLI_CLIENT_ID, scope=None))
            except InvalidGrant:
                results.append("invalid_grant")

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [r for r in results if r != "invalid_grant"]
        # No grace window: exactly one refresh succeeds. (A loser that read the token after
        # the winner committed sees reuse and revokes the grant; one that raced it does not.)
        assert len(winners) == 1 and len(results) == 2


def test_revoke_rfc_7009_semantics_OAUTH_9_OAUTH_10(tokens: TokenService, alice: UserInfo) -> None:
    a = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    for junk in ("", "garbage", "a.b.c", "llmgw_rt_unknown", "x" * 5000, uuid.uuid4().hex):
        assert tokens.revoke(junk, client_id=CLI_CLIENT_ID) == []
    # another client's token: a no-op, the token keeps working (V3)
    assert tokens.revoke(a.refresh_token or "", client_id="c_other") == []
    assert tokens.revoke(a.access_token, client_id="c_other") == []
    tokens.verify(a.access_token)
    # the owner revokes the refresh token: the grant's access token stops too (V1)
    assert tokens.revoke(a.refresh_token or "", client_id=CLI_CLIENT_ID) == [a.jti]
    with pytest.raises(AuthError):
        tokens.verify(a.access_token)
    with pytest.raises(InvalidGrant):
        tokens.refresh(a.refresh_token or "", client_id=CLI_CLIENT_ID, scope=None)
    assert tokens.revoke(a.refresh_token or "", client_id=CLI_CLIENT_ID) == []  # already


def test_revoke_an_access_token_revokes_its_grant(tokens: TokenService, alice: UserInfo) -> None:
    a = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    assert tokens.revoke(a.access_token) == [a.jti]
    with pytest.raises(InvalidGrant):
        tokens.refresh(a.refresh_token or "", client_id=CLI_CLIENT_ID, scope=None)


def test_personal_access_tokens(
    tokens: TokenService, alice: UserInfo, root: UserInfo, clock: Clock
) -> None:
    rec, token = tokens.create_pat(alice.id, "ci", "chat", timedelta(days=365))
    assert rec.kind == "pat" and rec.name == "ci" and rec.user_email == alice.email
    who = tokens.verify(token)
    assert who.user_id == alice.id and who.client_id is None and who.scopes == {"chat"}
    assert [r.jti for r in tokens.list_for(alice.id)] == [rec.jti]
    assert tokens.get(rec.jti[:10]).jti == rec.jti
    with pytest.raises(InvalidScope):
        tokens.create_pat(alice.id, "x", "admin", timedelta(days=1))
    tokens.create_pat(root.id, "ops", "admin chat", timedelta(days=1))
    for bad in (timedelta(0), timedelta(days=367)):
        with pytest.raises(UsageError):
            tokens.create_pat(alice.id, "x", "chat", bad)
    with pytest.raises(UsageError):
        tokens.create_pat(alice.id, " ", "chat", timedelta(days=1))
    clock.advance(364 * 86400)
    tokens.verify(token)
    assert tokens.revoke(rec.jti) == [rec.jti]
    with pytest.raises(AuthError):
        tokens.verify(token)
    assert tokens.list_for(alice.id) == []
    assert tokens.list_for(alice.id, include_inactive=True)[0].status(clock()) == "revoked"


def test_a_disabled_user_s_tokens_stop(
    engine: Engine, tokens: TokenService, alice: UserInfo
) -> None:
    a = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    UserService(engine).disable(alice.email)
    with pytest.raises(AuthError):
        tokens.verify(a.access_token)


def test_revoke_user_and_client(tokens: TokenService, alice: UserInfo) -> None:
    a = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    assert tokens.revoke_user(alice.id) == [a.jti]
    b = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    assert tokens.revoke_client(CLI_CLIENT_ID) == [b.jti]
    with pytest.raises(InvalidGrant):
        tokens.refresh(b.refresh_token or "", client_id=CLI_CLIENT_ID, scope=None)


# -- the verifier: RFC 8725 ------------------------------------------------------------------


def test_alg_none_hs256_confusion_and_other_algs_JWT_1(tokens: TokenService) -> None:
    claims = _claims(tokens)
    kid, key = tokens.keys.signer()
    none = _b64({"alg": "none", "typ": "at+jwt", "kid": kid}) + "." + _b64(claims) + "."
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    head = _b64({"alg": "HS256", "typ": "at+jwt", "kid": kid}) + "." + _b64(claims)
    for secret in (public_pem, base64.urlsafe_b64decode(tokens.keys.jwks()["keys"][0]["x"] + "=")):
        sig = hmac.new(secret, head.encode(), hashlib.sha256).digest()
        hs = head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
        with pytest.raises(AuthError):
            tokens.verify(hs)
    other = Ed25519PrivateKey.generate()
    forged = jwt.encode(claims, other, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})
    for bad in (none, none + "AAAA", forged):
        with pytest.raises(AuthError):
            tokens.verify(bad)
    tokens.verify(_signed(tokens, claims))  # the control: the same claims, well signed


@pytest.mark.parametrize(
    "over",
    [
        {"exp": 1},  # long past
        {"nbf": 4_102_444_800},  # 2100
        {"iat": 4_102_444_800},
        {"iss": ISSUER[:-1]},
        {"iss": ISSUER + "x"},
        {"iss": "gw.example"},
        {"iss": [ISSUER]},
        {"aud": "other"},
        {"aud": "llmgwx"},
        {"aud": ["other"]},
        {"jti": "not-hex"},
        {"scope": "root"},
    ],
)
def test_time_issuer_audience_JWT_2(tokens: TokenService, over: dict[str, Any]) -> None:
    with pytest.raises(AuthError):
        tokens.verify(_signed(tokens, _claims(tokens, **over)))


@pytest.mark.parametrize("missing", ["exp", "aud", "iss", "jti", "sub", "client_id", "scope"])
def test_missing_claims_JWT_2(tokens: TokenService, missing: str) -> None:
    claims = _claims(tokens)
    del claims[missing]
    with pytest.raises(AuthError):
        tokens.verify(_signed(tokens, claims))


def test_expiry_with_leeway_JWT_2(tokens: TokenService, alice: UserInfo, clock: Clock) -> None:
    issued = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    tokens.verify(issued.access_token)
    clock.advance(900 + 20)  # inside the 30 s leeway
    tokens.verify(issued.access_token)
    clock.advance(40)
    with pytest.raises(AuthError):
        tokens.verify(issued.access_token)


@pytest.mark.parametrize(
    "headers",
    [
        {"typ": None},
        {"typ": "JWT"},
        {"typ": "at+JWT "},
        {"typ": "id_token"},
        {"crit": ["exp"]},
        {"crit": ["x-unknown"], "x-unknown": 1},
    ],
)
def test_typ_and_crit_JWT_3(tokens: TokenService, headers: dict[str, Any]) -> None:
    with pytest.raises(AuthError):
        tokens.verify(_signed(tokens, _claims(tokens), **headers))


def test_refresh_tokens_are_not_access_tokens_JWT_3(tokens: TokenService, alice: UserInfo) -> None:
    issued = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    with pytest.raises(AuthError):
        tokens.verify(issued.refresh_token or "")


def test_unknown_kids_reload_at_most_once_per_cooldown_JWT_4(engine: Engine, clock: Clock) -> None:
    mono = [0.0]
    keys = SigningKeys(engine, b"s" * 32, clock=clock, monotonic=lambda: mono[0])
    tokens = TokenService(engine, keys, issuer=ISSUER, clock=clock)
    claims = _claims(tokens)
    before = keys.reloads
    for i in range(1000):
        bad = _signed(tokens, claims, kid=f"k{i}")
        with pytest.raises(AuthError):
            tokens.claims(bad)
    for kid in ("../../etc/passwd", "' OR 1=1 --", "x" * 65):
        with pytest.raises(AuthError):
            tokens.claims(_signed(tokens, claims, kid=kid))
    assert keys.reloads - before <= 1
    mono[0] += 11
    with pytest.raises(AuthError):
        tokens.claims(_signed(tokens, claims, kid="again"))
    assert keys.reloads - before <= 2


def test_jku_and_x5u_are_never_fetched_JWT_4(
    tokens: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    claims = _claims(tokens)
    tokens.keys.signer()  # loaded before sockets are watched (the database may be PostgreSQL)
    connects: list[Any] = []
    real = socket.socket.connect

    def watched(sock: socket.socket, address: Any) -> Any:
        connects.append(address)
        return real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", watched)
    other = Ed25519PrivateKey.generate()
    kid = tokens.keys.signer()[0]
    for extra in ({"jku": "http://127.0.0.1:9/jwks"}, {"x5u": "http://127.0.0.1:9/c"}):
        bad = jwt.encode(
            claims, other, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt", **extra}
        )
        with pytest.raises(AuthError):
            tokens.claims(bad)  # the verifier never follows a URL (pure lookups)
    assert connects == []


def test_rotation_overlap_and_retirement_JWT_5(
    engine: Engine, tokens: TokenService, alice: UserInfo, clock: Clock
) -> None:
    old = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat", refresh=False)
    old_kid = jwt.get_unverified_header(old.access_token)["kid"]
    new = tokens.keys.rotate(timedelta(hours=1))
    assert new.kid != old_kid
    fresh = tokens.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat", refresh=False)
    assert jwt.get_unverified_header(fresh.access_token)["kid"] == new.kid
    assert {k["kid"] for k in tokens.keys.jwks()["keys"]} == {old_kid, new.kid}
    states = {k.kid: k.state(clock()) for k in tokens.keys.list()}
    assert states == {new.kid: "signing", old_kid: "verifying"}
    tokens.claims(old.access_token, verify_exp=False)  # inside the overlap
    clock.advance(3601)
    # another process (a fresh key map) sees the old key expired
    other = SigningKeys(engine, b"s" * 32, clock=clock)
    later = TokenService(engine, other, issuer=ISSUER, clock=clock)
    with pytest.raises(AuthError):
        later.claims(old.access_token, verify_exp=False)
    later.claims(fresh.access_token, verify_exp=False)
    assert [k["kid"] for k in other.jwks()["keys"]] == [new.kid]


def test_rotation_keeps_the_old_key_while_a_pat_lives(
    engine: Engine, tokens: TokenService, alice: UserInfo, clock: Clock
) -> None:
    _, pat = tokens.create_pat(alice.id, "ci", "chat", timedelta(days=30))
    tokens.keys.rotate(timedelta(hours=1))
    clock.advance(29 * 86400)
    other = TokenService(
        engine, SigningKeys(engine, b"s" * 32, clock=clock), issuer=ISSUER, clock=clock
    )
    assert other.claims(pat)["scope"] == "chat"


def test_keys_are_encrypted_at_rest(engine: Engine, tokens: TokenService, clock: Clock) -> None:
    import sqlalchemy as sa

    tokens.keys.signer()
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT private_key FROM oauth_signing_keys")).scalar_one()
    assert stored.startswith("aesgcm1:")
    wrong = SigningKeys(engine, b"w" * 32, clock=clock)
    with pytest.raises(ConfigError):
        wrong.signer()


def test_load_secret(tmp_path: Any) -> None:
    first = load_secret(None, tmp_path / "h")
    assert load_secret(None, tmp_path / "h") == first
    assert oct((tmp_path / "h" / "identity.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError):
        load_secret("short", tmp_path)
    assert load_secret("k" * 32, tmp_path) == b"k" * 32


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_byte_mutation_is_refused_JWT_5(
    tokens: TokenService, alice: UserInfo, data: st.DataObject
) -> None:
    """Any single-byte change of header, payload or signature: AuthError (401), never a crash."""
    token = _good_token(tokens, alice)
    pos = data.draw(st.integers(0, len(token) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != ord(token[pos])))
    raw = bytearray(token.encode())
    raw[pos] = byte
    mutated = raw.decode("latin-1")
    try:
        tokens.verify(mutated)
    except AuthError:
        return
    # base64 padding bits: a change that decodes to the same bytes is the same token
    assert _same_token(token, mutated)


_GOOD: dict[int, str] = {}


def _good_token(tokens: TokenService, alice: UserInfo) -> str:
    key = id(tokens)
    if key not in _GOOD:
        _GOOD.clear()
        _GOOD[key] = tokens.issue(
            client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat", refresh=False
        ).access_token
    return _GOOD[key]


def _same_token(a: str, b: str) -> bool:
    def parts(t: str) -> list[bytes]:
        return [base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in t.split(".")]

    try:
        return parts(a) == parts(b)
    except Exception:  # noqa: BLE001
        return False


def test_from_settings(engine: Engine, alice: UserInfo, home: Any) -> None:
    from llmgw.config import Settings

    s = Settings(home=home, identity={"issuer": "https://llm.example.com/", "audience": "api"})
    svc = TokenService.from_settings(s, engine)
    assert svc.issuer == "https://llm.example.com" and svc.audience == "api"
    issued = svc.issue(client_id=CLI_CLIENT_ID, user_id=alice.id, scope="chat")
    assert svc.verify(issued.access_token).user_id == alice.id
    assert (home / "identity.key").exists()
    assert Settings(home=home).issuer == "http://127.0.0.1:8080"
    assert Settings(home=home, server={"host": "::1", "port": 9}).issuer == "http://[::1]:9"
