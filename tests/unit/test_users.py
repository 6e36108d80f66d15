"""UserService on SQLite and PostgreSQL."""

from __future__ import annotations

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
    keys.create("k1", user_email="second@example.com")
    k2 = keys.create("k2", user_email="second@example.com")
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
