"""KeyService on SQLite and PostgreSQL: the whole key lifecycle and hostile secrets."""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.auth import keys as keys_mod
from llmgw.auth.keys import CreatedKey, KeyInfo, KeyService
from llmgw.auth.users import UserService
from llmgw.errors import AuthError, Conflict, NotFound, UsageError

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(engine: Engine, clock: Clock) -> KeyService:
    return KeyService(engine, clock=clock)


def _rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]


def _auth_error(keys: KeyService, secret: Any) -> AuthError:
    with pytest.raises(AuthError) as info:
        keys.authenticate(secret)
    assert type(info.value) is AuthError
    return info.value


def test_create_returns_a_typed_high_entropy_secret_once(keys: KeyService) -> None:
    created = keys.create("ci", rpm=60, tpm=10_000, models=["local/gpt-4o-mini", "chat-default"])
    secret = created.secret
    assert secret.startswith("llmgw_") and len(secret) == 6 + 43
    # 43 url-safe characters carry 258 bits; decoding proves it is base64 of 32 bytes.
    import base64

    assert len(base64.urlsafe_b64decode(secret[6:] + "=")) == 32
    info = created.info
    assert info.prefix == secret[:12]
    assert (info.name, info.rpm, info.tpm) == ("ci", 60, 10_000)
    assert info.models == ("local/gpt-4o-mini", "chat-default")
    assert info.created_at == T0 and info.expires_at is None and info.revoked_at is None
    assert info.user_id is None and info.last_used_at is None
    # No later call hands the secret out again, and reprs never carry it.
    again = keys.get(str(info.id))
    assert secret not in repr(again) and secret not in repr(created)
    assert secret[12:] not in repr(created)


def test_two_keys_never_share_secret_or_prefix(keys: KeyService) -> None:
    made = [keys.create(f"k{i}") for i in range(20)]
    assert len({c.secret for c in made}) == 20
    assert len({c.info.prefix for c in made}) == 20


def test_authenticate_returns_the_key(keys: KeyService) -> None:
    created = keys.create("svc", rpm=5)
    info = keys.authenticate(created.secret)
    assert info.id == created.info.id and info.rpm == 5
    assert info.is_active(T0)


def test_db_holds_only_digest_and_prefix(keys: KeyService, engine: Engine) -> None:
    created = keys.create("ci")
    [row] = _rows(engine)
    dump = " ".join(repr(v) for v in row.values())
    assert created.secret not in dump
    assert created.secret[12:] not in dump  # not even the secret part without its prefix
    assert row["digest"] == hashlib.sha256(created.secret.encode()).hexdigest()
    assert row["prefix"] == created.secret[:12]


def test_authenticate_is_one_query_by_digest(keys: KeyService, engine: Engine) -> None:
    created = keys.create("ci")
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        keys.authenticate(created.secret)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 1
    assert "api_keys.digest =" in statements[0] and created.secret not in statements[0]


def test_constant_time_comparison_is_used(
    keys: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("llmgw.auth.keys.hmac.compare_digest", spy)
    created = keys.create("ci")
    keys.authenticate(created.secret)
    assert len(calls) == 1
    # An unknown but well-formed key takes the same comparison path.
    _auth_error(keys, "llmgw_" + "A" * 43)
    assert len(calls) == 2


def test_expiry_follows_the_injected_clock(keys: KeyService, clock: Clock) -> None:
    created = keys.create("short", expires_in=timedelta(hours=1))
    assert created.info.expires_at == T0 + timedelta(hours=1)
    clock.now = T0 + timedelta(minutes=59, seconds=59)
    assert keys.authenticate(created.secret).id == created.info.id
    clock.now = T0 + timedelta(hours=1)
    err = _auth_error(keys, created.secret)
    assert err.message == "invalid API key"
    info = keys.get(created.info.prefix)
    assert info.status(clock.now) == "expired" and not info.is_active(clock.now)
    # Expired keys still show up in the default listing; they are not revoked.
    assert [k.id for k in keys.list()] == [created.info.id]


def test_revoke_stops_the_key_and_is_idempotent(keys: KeyService, clock: Clock) -> None:
    created = keys.create("ci")
    other = keys.create("other")
    clock.now = T0 + timedelta(minutes=5)
    revoked = keys.revoke(str(created.info.id)[:8])
    assert revoked.revoked_at == clock.now and revoked.status(clock.now) == "revoked"
    _auth_error(keys, created.secret)
    assert keys.authenticate(other.secret).id == other.info.id
    clock.now = T0 + timedelta(minutes=10)
    assert keys.revoke(created.info.prefix).revoked_at == T0 + timedelta(minutes=5)
    assert [k.id for k in keys.list()] == [other.info.id]
    assert {k.id for k in keys.list(include_revoked=True)} == {created.info.id, other.info.id}


def test_revoking_an_unknown_key_is_not_found(keys: KeyService, engine: Engine) -> None:
    keys.create("ci")
    for ref in ("deadbeef", str(uuid.uuid4()), "llmgw_zzzzzz", "nope", "", "' OR 1=1 --"):
        with pytest.raises(NotFound):
            keys.revoke(ref)
    assert all(r["revoked_at"] is None for r in _rows(engine))


def test_rotate_replaces_the_secret_and_keeps_settings(
    keys: KeyService, engine: Engine, clock: Clock
) -> None:
    users = UserService(engine, clock=clock)
    users.create("owner@example.com")
    old = keys.create(
        "svc",
        user="owner@example.com",
        expires_in=timedelta(days=30),
        rpm=7,
        tpm=700,
        models=["local/*"],
    )
    clock.now = T0 + timedelta(days=1)
    new = keys.rotate(old.info.prefix)
    assert new.secret != old.secret and new.info.id != old.info.id
    _auth_error(keys, old.secret)
    got = keys.authenticate(new.secret)
    for field in ("name", "user_id", "rpm", "tpm", "models", "expires_at"):
        assert getattr(got, field) == getattr(old.info, field), field
    assert got.rotated_from == old.info.id and got.created_at == clock.now
    assert keys.get(str(old.info.id)).revoked_at == clock.now
    with pytest.raises(Conflict):
        keys.rotate(str(old.info.id))  # a revoked key cannot be rotated again


def test_rotating_an_expired_key_is_refused(keys: KeyService, clock: Clock) -> None:
    old = keys.create("svc", expires_in=timedelta(minutes=1))
    clock.now = T0 + timedelta(minutes=2)
    with pytest.raises(Conflict):
        keys.rotate(old.info.prefix)
    assert len(keys.list(include_revoked=True)) == 1


def test_concurrent_rotations_let_exactly_one_win(engine: Engine) -> None:
    keys = KeyService(engine)
    old = keys.create("svc")
    barrier = threading.Barrier(2)
    results: list[CreatedKey | Exception] = []

    def rotate() -> None:
        barrier.wait()
        try:
            results.append(keys.rotate(str(old.info.id)))
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            results.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    won = [r for r in results if isinstance(r, CreatedKey)]
    lost = [r for r in results if not isinstance(r, CreatedKey)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict), results
    live = [k for k in keys.list()]
    assert [k.id for k in live] == [won[0].info.id]


def test_disabled_users_keys_fail_until_enabled(keys: KeyService, engine: Engine) -> None:
    users = UserService(engine)
    users.create("ann@example.com")
    created = keys.create("ann-laptop", user="ANN@example.com")
    assert created.info.user_email == "ann@example.com"
    users.disable("ann@example.com")
    _auth_error(keys, created.secret)
    assert keys.get(created.info.prefix).status(T0) == "user disabled"
    with pytest.raises(Conflict):
        keys.create("more", user="ann@example.com")
    users.enable("ann@example.com")
    assert keys.authenticate(created.secret).id == created.info.id


def test_key_for_unknown_user_is_not_found_and_writes_nothing(
    keys: KeyService, engine: Engine
) -> None:
    with pytest.raises(NotFound):
        keys.create("x", user="ghost@example.com")
    with pytest.raises(NotFound):
        keys.create("x", user="not-an-email")
    assert _rows(engine) == []


def test_a_keys_owner_is_named_as_everywhere_else_by_email_id_prefix_or_name(
    keys: KeyService, engine: Engine
) -> None:
    """``keys create --user`` takes the user as every other command does (``find_user``): the
    email in any case, the id whole or as the 8-character prefix ``users list`` shows, or the
    display name; a name two users share is refused listing both, and nothing is written."""
    users = UserService(engine)
    ann = users.create("ann@example.com", name="Ann")
    users.create("bob@example.com", name="Team")
    users.create("cid@example.com", name="Team")
    for i, ref in enumerate(("ANN@example.com", str(ann.id), str(ann.id)[:8], "Ann")):
        assert keys.create(f"k{i}", user=ref).info.user_email == "ann@example.com", ref
    with pytest.raises(UsageError, match="matches 2 users") as shared:
        keys.create("x", user="Team")
    assert "bob@example.com" in str(shared.value) and "cid@example.com" in str(shared.value)
    assert len(_rows(engine)) == 4


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "rpm": 0}, "rpm"),
        ({"name": "ok", "tpm": -5}, "tpm"),
        ({"name": "ok", "models": []}, "model"),
        ({"name": "ok", "models": ["a", ""]}, "model"),
        ({"name": "ok", "expires_in": timedelta(0)}, "expir"),
        ({"name": "ok", "expires_in": timedelta(days=-1)}, "expir"),
        ({"name": "ok", "expires_in": timedelta(days=40_000)}, "expir"),
    ],
)
def test_bad_settings_are_usage_errors_and_write_nothing(
    keys: KeyService, engine: Engine, kwargs: dict[str, Any], word: str
) -> None:
    with pytest.raises(UsageError) as info:
        keys.create(**kwargs)
    assert word in info.value.message
    assert _rows(engine) == []


def _hostile(secret: str) -> list[Any]:
    body = secret[6:]
    return [
        "",
        " ",
        "' OR '1'='1",
        "llmgw_' OR '1'='1' -- " + "x" * 21,
        "llmgw_" + "'; DROP TABLE api_keys; --" + "a" * 17,
        "\x00",
        "llmgw_" + "\x00" * 43,
        secret[:20] + "\x00" + secret[21:],
        "A" * 65536,
        "llmgw_" + "a" * 65536,
        "llmgw_" + "é" * 43,
        "llmgw_" + "ключ" * 11,
        "sk-" + "a" * 48,
        "Bearer " + secret,
        secret + "x",
        secret[:-1],
        secret.upper(),
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "llmgw_" + body[::-1],
        "LLMGW_" + body,
        secret + "\n",
        b"llmgw_" + b"a" * 43,
        None,
        42,
    ]


def test_malformed_and_hostile_secrets_get_one_uniform_auth_error(
    keys: KeyService, engine: Engine
) -> None:
    created = keys.create("ci")
    errors = [_auth_error(keys, s) for s in _hostile(created.secret)]
    assert {(e.message, e.hint, e.http_status, e.code) for e in errors} == {
        ("invalid API key", errors[0].hint, 401, "invalid_api_key")
    }
    # Same answer as for a revoked key; and the table is intact.
    keys.revoke(created.info.prefix)
    assert _auth_error(keys, created.secret).message == errors[0].message
    assert len(_rows(engine)) == 1


def test_get_accepts_id_id_prefix_and_key_prefix(keys: KeyService) -> None:
    created = keys.create("ci")
    kid = str(created.info.id)
    refs = (kid, kid.upper(), kid[:8], kid.replace("-", "")[:13], created.info.prefix)
    for ref in (*refs, created.secret):  # a pasted secret matches by prefix and digest
        assert keys.get(ref).id == created.info.id, ref
    wrong = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    with pytest.raises(NotFound) as info:
        keys.get(wrong)  # same prefix, other digest: not found, and never echoed
    assert wrong not in info.value.message
    assert wrong[12:] not in str(info.value)
    with pytest.raises(UsageError, match="at least 8 characters"):
        keys.get(kid[:6])


def test_ambiguous_id_prefix_asks_for_more(
    keys: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(
        [
            uuid.UUID("abcdef01-0000-4000-8000-000000000001"),
            uuid.UUID("abcdef01-0000-4000-8000-000000000002"),
        ]
    )
    monkeypatch.setattr("llmgw.auth.keys.uuid.uuid4", lambda: next(ids))
    keys.create("one")
    keys.create("two")
    monkeypatch.undo()
    with pytest.raises(UsageError):
        keys.get("abcdef01")
    assert keys.get("abcdef01-0000-4000-8000-000000000002").name == "two"


def test_get_accepts_an_exact_name_and_prefers_the_live_key(keys: KeyService, clock: Clock) -> None:
    ci = keys.create("ci-bot")
    assert keys.get("ci-bot").id == ci.info.id
    assert keys.get("  ci-bot ").id == ci.info.id  # as typed, spaces around
    with pytest.raises(NotFound):
        keys.get("CI-BOT")  # exact, not case-folded
    clock.now += timedelta(minutes=1)
    new = keys.rotate("ci-bot")  # the name passes to the new key; the old one is revoked
    assert keys.get("ci-bot").id == new.info.id
    keys.revoke("ci-bot")
    with pytest.raises(UsageError, match="matches 2 keys"):
        keys.get("ci-bot")  # no live key of the name left: both revoked ones compete
    keys.create("ci-bot")
    assert keys.get("ci-bot").revoked_at is None
    solo = keys.create("solo")
    keys.revoke("solo")
    assert keys.get("solo").id == solo.info.id  # the one revoked key of a name is still found


def test_a_name_of_several_keys_lists_their_ids_and_never_picks_one(
    keys: KeyService, clock: Clock
) -> None:
    a = keys.create("shared")
    clock.now += timedelta(minutes=1)
    b = keys.create("shared")
    with pytest.raises(UsageError) as info:
        keys.get("shared")
    err = info.value
    assert err.message == (
        f"'shared' matches 2 keys: {a.info.id.hex[:8]} ({a.info.prefix}), "
        f"{b.info.id.hex[:8]} ({b.info.prefix})"
    )
    assert err.hint is not None and "id" in err.hint and "llmgw keys list --all" in err.hint
    assert a.secret not in str(err) and b.secret not in str(err)
    keys.revoke(str(a.info.id))
    assert keys.get("shared").id == b.info.id  # live first: the revoked one no longer competes
    keys.revoke(str(b.info.id))
    with pytest.raises(UsageError, match=r"matches 2 keys: .*revoked\)"):
        keys.get("shared")  # two revoked keys of the name, no live one


def test_a_name_that_looks_like_an_id_prefix_or_is_short_hex(
    keys: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "llmgw.auth.keys.uuid.uuid4", lambda: uuid.UUID("deadbeef-0000-4000-8000-000000000001")
    )
    first = keys.create("first")
    monkeypatch.undo()
    keys.create("cafe")
    assert keys.get("cafe").name == "cafe"  # short hex, but a name
    other = keys.create("deadbeef")  # another key's id prefix as a name: ambiguous, refused
    with pytest.raises(UsageError, match="matches 2 keys") as info:
        keys.get("deadbeef")
    assert (
        first.info.id.hex[:8] in info.value.message and other.info.id.hex[:8] in info.value.message
    )
    assert keys.get(str(other.info.id)).name == "deadbeef"
    with pytest.raises(NotFound) as nf:
        keys.get("no-such-key")
    assert nf.value.hint is not None and nf.value.hint.startswith("give its name, id")


def test_touch_last_used_is_batched_and_never_goes_back(keys: KeyService, engine: Engine) -> None:
    a, b = keys.create("a"), keys.create("b")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    t1 = T0 + timedelta(seconds=10)
    keys.touch_last_used({a.info.id: t1, b.info.id: t1})
    keys.touch_last_used({a.info.id: T0})  # older: ignored
    assert sum("UPDATE" in s for s in statements) == 2
    assert keys.get(a.info.prefix).last_used_at == t1
    assert keys.get(b.info.prefix).last_used_at == t1
    keys.touch_last_used({})


@pytest.mark.parametrize(
    ("allow", "model", "ok"),
    [
        (None, "anything/at:all", True),
        (("local/gpt-4o-mini",), "local/gpt-4o-mini", True),
        (("local/gpt-4o-mini",), "local/gpt-4o-mini:2024-07-18", True),
        (("local/gpt-4o-mini:2024-07-18",), "local/gpt-4o-mini", False),
        (("local/gpt-4o-mini:2024-07-18",), "local/gpt-4o-mini:2024-07-18", True),
        (("local/gpt-4o-mini",), "local/gpt-4o", False),
        (("local/gpt-4o-mini",), "other/gpt-4o-mini", False),
        (("chat-default",), "chat-default", True),
        (("chat-default",), "chat-default-2", False),
        (("local/*",), "local/anything:v1", True),
        (("local/*",), "local/", False),
        (("local/*",), "localx/m", False),
        ((), "local/gpt-4o-mini", False),
    ],
)
def test_allows_model(allow: tuple[str, ...] | None, model: str, ok: bool) -> None:
    info = KeyInfo(
        id=uuid.uuid4(),
        name="k",
        prefix="llmgw_abcdef",
        user_id=None,
        expires_at=None,
        revoked_at=None,
        rpm=None,
        tpm=None,
        models=allow,
        created_at=T0,
        last_used_at=None,
    )
    assert info.allows_model(model) is ok


def test_a_prefix_collision_is_retried_not_fatal(
    keys: KeyService, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = keys_mod.generate_secret()
    clash = first[:12] + keys_mod.generate_secret()[12:]  # same public prefix, other secret
    fresh = keys_mod.generate_secret()
    queue = iter([first, clash, fresh])
    monkeypatch.setattr(keys_mod, "generate_secret", lambda: next(queue))
    a = keys.create("a")
    b = keys.create("b")  # the clash hits the unique prefix index, then a new secret is drawn
    assert a.secret == first and b.secret == fresh
    assert len(_rows(engine)) == 2
    assert keys.authenticate(first).id == a.info.id
    assert keys.authenticate(fresh).id == b.info.id
    _auth_error(keys, clash)


def test_rotation_is_atomic_when_the_new_key_cannot_be_written(
    keys: KeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = keys.create("svc")
    monkeypatch.setattr(keys_mod, "generate_secret", lambda: old.secret)  # always collides
    with pytest.raises(Conflict):
        keys.rotate(old.info.prefix)
    monkeypatch.undo()
    # The old key was not left revoked without a successor.
    assert keys.authenticate(old.secret).id == old.info.id


def test_fuzzed_secrets_never_authenticate_and_never_raise_anything_else(
    keys: KeyService,
) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    created = keys.create("ci")
    real = created.secret
    urlsafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    mutated = st.tuples(st.integers(0, len(real) - 1), st.characters(codec="utf-8")).map(
        lambda ic: real[: ic[0]] + ic[1] + real[ic[0] + 1 :]
    )
    candidates = st.one_of(
        st.text(max_size=300),
        st.text(alphabet=urlsafe, min_size=43, max_size=43).map(lambda t: "llmgw_" + t),
        mutated,
    )

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(candidates)
    def check(secret: str) -> None:
        if secret == real:
            return
        with pytest.raises(AuthError) as info:
            keys.authenticate(secret)
        assert type(info.value) is AuthError and info.value.message == "invalid API key"

    check()
    assert keys.authenticate(real).id == created.info.id
