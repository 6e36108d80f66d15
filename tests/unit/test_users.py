"""UserService on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.auth.keys import KeyService
from llmgw.auth.users import UserService, normalize_email
from llmgw.errors import Conflict, NotFound, UsageError

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def users(engine: Engine) -> UserService:
    return UserService(engine, clock=lambda: T0)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one())


def test_create_normalises_the_email(users: UserService) -> None:
    user = users.create("  Ann.Lee@Example.COM ", name=" Ann ", role="admin")
    assert (user.email, user.name, user.role, user.disabled) == (
        "ann.lee@example.com",
        "Ann",
        "admin",
        False,
    )
    assert user.created_at == T0 and user.keys == 0
    assert users.get("ANN.LEE@example.com").id == user.id
    assert users.get(str(user.id)).email == user.email


def test_duplicate_email_is_a_conflict_even_in_other_case(
    users: UserService, engine: Engine
) -> None:
    users.create("bob@example.com")
    with pytest.raises(Conflict) as info:
        users.create("BOB@example.com", name="again")
    assert "bob@example.com" in info.value.message and info.value.exit_code == 5
    assert _count(engine) == 1


@pytest.mark.parametrize(
    "email",
    [
        "",
        "bob",
        "bob@",
        "@example.com",
        "bob@example",
        "bob@@example.com",
        "bob smith@example.com",
        "bob@exa mple.com",
        "bob\x00@example.com",
        "bob@exa\nmple.com",
        "' OR 1=1 --@x.io" + "\t",
        "a" * 65 + "@example.com",
        "b@" + "x" * 320 + ".com",
    ],
)
def test_bad_email_is_a_usage_error(users: UserService, engine: Engine, email: str) -> None:
    with pytest.raises(UsageError):
        users.create(email)
    assert _count(engine) == 0


def test_bad_role_and_name(users: UserService, engine: Engine) -> None:
    with pytest.raises(UsageError):
        users.create("a@example.com", role="root")
    with pytest.raises(UsageError):
        users.create("a@example.com", name="x\x1b[31m")
    assert _count(engine) == 0


def test_list_is_oldest_first_with_live_key_counts(engine: Engine) -> None:
    now = [T0]
    users = UserService(engine, clock=lambda: now[0])
    keys = KeyService(engine, clock=lambda: now[0])
    users.create("first@example.com")
    now[0] = T0 + timedelta(seconds=1)
    users.create("second@example.com")
    keys.create("k1", user="second@example.com")
    k2 = keys.create("k2", user="second@example.com")
    keys.revoke(k2.info.prefix)
    listed = users.list()
    assert [u.email for u in listed] == ["first@example.com", "second@example.com"]
    assert [u.keys for u in listed] == [0, 1]


def test_disable_and_enable_are_idempotent(users: UserService) -> None:
    users.create("c@example.com")
    assert users.disable("c@example.com").disabled
    assert users.disable("C@example.com").disabled
    assert users.get("c@example.com").disabled
    assert not users.enable("c@example.com").disabled
    assert not users.enable("c@example.com").disabled


@pytest.mark.parametrize(
    "ref",
    [
        "ghost@example.com",
        # a well-formed id that names no user; fixed, so every xdist worker collects the same ids
        "6f1c2a9e-0000-4000-8000-000000000000",
        "not-an-id",
        "",
        "' OR '1'='1",
    ],
)
def test_unknown_user_is_not_found(users: UserService, ref: str) -> None:
    users.create("real@example.com")
    with pytest.raises(NotFound):
        users.get(ref)
    with pytest.raises(NotFound):
        users.disable(ref)
    assert not users.get("real@example.com").disabled


def test_normalize_email_is_pure() -> None:
    assert normalize_email("X@Y.Z") == "x@y.z"


def _fixed_ids(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    """The next users created get these ids, in order."""
    queue = [uuid.UUID(i) for i in ids]
    monkeypatch.setattr("llmgw.auth.users.uuid.uuid4", lambda: queue.pop(0))


def test_get_accepts_the_short_id_users_list_shows_and_any_unique_prefix(
    users: UserService,
) -> None:
    ann = users.create("ann@example.com", name="Ann Lee")
    short = ann.id.hex[:8]  # what `llmgw users list` prints
    for ref in (short, f" {short} ", short.upper(), ann.id.hex[:13], str(ann.id)[:13], ann.id.hex):
        assert users.get(ref).id == ann.id, ref
    assert users.get("ANN@EXAMPLE.COM").id == ann.id  # emails are stored lower-cased
    assert users.get("Ann Lee").id == ann.id  # the display name, exactly
    with pytest.raises(NotFound):
        users.get("ann lee")
    assert users.disable(short).disabled and users.get("Ann Lee").disabled
    assert not users.enable("Ann Lee").disabled
    assert users.set_role(short, "admin").role == "admin"


def test_an_id_prefix_of_two_users_lists_both_and_picks_neither(
    users: UserService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_ids(
        monkeypatch,
        "abcdef01-0000-4000-8000-000000000001",
        "abcdef01-0000-4000-8000-000000000002",
    )
    users.create("one@example.com")
    users.create("two@example.com")
    monkeypatch.undo()
    with pytest.raises(UsageError) as info:
        users.disable("abcdef01")
    err = info.value
    assert err.exit_code == 2
    assert err.message == (
        "'abcdef01' matches 2 users: abcdef01 (one@example.com), abcdef01 (two@example.com)"
    )
    assert err.hint == (
        "give the email or the id (8+ characters) of the one you mean; "
        "`llmgw users list` shows them"
    )
    assert not any(u.disabled for u in users.list())
    assert users.get("abcdef01-0000-4000-8000-000000000002").email == "two@example.com"
    assert users.get("ABCDEF01000040008000000000000001").email == "one@example.com"  # no dashes


def test_a_shared_display_name_or_a_name_that_is_an_id_prefix_is_ambiguous(
    users: UserService, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_ids(monkeypatch, "deadbeef-0000-4000-8000-000000000001")
    first = users.create("first@example.com")
    monkeypatch.undo()
    a = users.create("a@example.com", name="Ops")
    b = users.create("b@example.com", name="Ops")
    users.disable("b@example.com")
    with pytest.raises(UsageError) as info:
        users.get("Ops")
    shown = {
        a.id: f"{a.id.hex[:8]} (a@example.com)",
        b.id: f"{b.id.hex[:8]} (b@example.com, disabled)",
    }
    listed = ", ".join(shown[i] for i in sorted(shown))  # same created_at: ordered by id
    assert info.value.message == f"'Ops' matches 2 users: {listed}"
    users.create("c@example.com", name="deadbeef")  # another user's id prefix as a name
    with pytest.raises(UsageError, match="'deadbeef' matches 2 users") as info:
        users.get("deadbeef")
    assert "first@example.com" in info.value.message and "c@example.com" in info.value.message
    assert users.get(str(first.id)).email == "first@example.com"


def test_unknown_and_too_short_refs_say_what_works(users: UserService) -> None:
    ann = users.create("ann@example.com")
    with pytest.raises(NotFound) as nf:
        users.get("nobody")
    assert nf.value.message == "no user matches 'nobody'"
    assert nf.value.hint == (
        "give their email, id (8+ characters) or name; `llmgw users list` shows every user"
    )
    with pytest.raises(UsageError) as short:
        users.get(ann.id.hex[:7])
    assert short.value.message == (
        f"{ann.id.hex[:7]!r} is too short to name a user: give at least 8 characters of their id"
    )
    users.create("b@example.com", name="cafe")
    assert users.get("cafe").email == "b@example.com"  # short hex, but a name
    with pytest.raises(NotFound):
        users.get("x" * 5000)
