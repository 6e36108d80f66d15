"""Passwords (``llmgw.identity.passwords``): argon2id, constant work for unknown users, rehash."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from llmgw.errors import Conflict, NotFound, UsageError
from llmgw.identity import passwords


def test_hash_is_argon2id_and_verifies() -> None:
    h = passwords.hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert passwords.verify_password(h, "correct horse battery")
    assert not passwords.verify_password(h, "correct horse batterY")
    assert not passwords.needs_rehash(h)


def test_unknown_user_verifies_nothing_but_does_the_work() -> None:
    assert not passwords.verify_password(None, "anything at all")
    assert not passwords.verify_password("not a hash", "anything at all")
    assert not passwords.verify_password(None, "x" * 100_000)


@pytest.mark.parametrize(
    "bad", ["s3cr3t!", "", "x" * 1025, "has\nnewline-long", "nul\x00-in-it-long"]
)
def test_unacceptable_passwords_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(UsageError) as info:
        passwords.hash_password(bad)
    assert bad == "" or bad not in str(info.value) + str(info.value.hint)


def test_set_password_authenticate_and_rehash_old_parameters(engine: Engine) -> None:
    from llmgw.auth.users import UserService

    UserService(engine).create("ann@example.com")
    passwords.set_password(engine, "Ann@Example.com", "correct horse battery")
    assert passwords.authenticate(engine, "ANN@example.com", "correct horse battery") is not None
    assert passwords.authenticate(engine, "ann@example.com", "wrong horse battery") is None
    assert passwords.authenticate(engine, "nobody@example.com", "correct horse battery") is None
    assert passwords.authenticate(engine, "not an email", "correct horse battery") is None
    # A hash made with weaker parameters is replaced on the next successful sign-in.
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(
        "correct horse battery"
    )
    users = sa.table("users", sa.column("email"), sa.column("password_hash"))
    with engine.begin() as conn:
        conn.execute(sa.update(users).values(password_hash=weak))
    assert passwords.authenticate(engine, "ann@example.com", "correct horse battery") is not None
    with engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored != weak and not passwords.needs_rehash(stored)
    with pytest.raises(NotFound):
        passwords.set_password(engine, "ghost@example.com", "correct horse battery")


def test_disabled_user_cannot_sign_in(engine: Engine) -> None:
    from llmgw.auth.users import UserService

    UserService(engine).create("ann@example.com")
    passwords.set_password(engine, "ann@example.com", "correct horse battery")
    UserService(engine).disable("ann@example.com")
    assert passwords.authenticate(engine, "ann@example.com", "correct horse battery") is None


def test_bootstrap_admin_only_once(engine: Engine) -> None:
    from llmgw.auth.users import UserService

    UserService(engine).create("ann@example.com")
    admin = passwords.bootstrap_admin(engine, "ann@example.com", "correct horse battery")
    assert admin.role == "admin"
    assert passwords.authenticate(engine, "ann@example.com", "correct horse battery") is not None
    with pytest.raises(Conflict):
        passwords.bootstrap_admin(engine, "bob@example.com", "correct horse battery")
    assert [u.email for u in UserService(engine).list()] == ["ann@example.com"]
