"""Scopes and the Principal."""

from __future__ import annotations

import uuid

import pytest

from llmgw.errors import InvalidRequest
from llmgw.identity.principal import Principal
from llmgw.identity.scopes import SCOPES, format_scope, parse_scope


def test_parse_and_format() -> None:
    assert SCOPES == ("chat", "keys:self", "usage:self", "admin")
    assert parse_scope("admin chat") == frozenset({"admin", "chat"})
    assert parse_scope("") == frozenset() and parse_scope(None) == frozenset()
    assert format_scope({"admin", "chat", "usage:self"}) == "chat usage:self admin"


@pytest.mark.parametrize("bad", ["root", "chat  admin", "chat\tadmin", "CHAT", " chat"])
def test_unknown_scopes_are_invalid_requests(bad: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_scope(bad)
    assert exc.value.code == "invalid_scope"


def test_principal_admin_needs_role_and_scope() -> None:
    uid = uuid.uuid4()
    admin = Principal(uid, "a@x.io", "admin", frozenset({"admin"}), "jwt", "j1")
    assert admin.is_admin and admin.has("admin") and not admin.has("chat")
    assert not Principal(uid, "a@x.io", "user", frozenset({"admin"}), "jwt").is_admin
    assert not Principal(uid, "a@x.io", "admin", frozenset({"chat"}), "key").is_admin
