"""LocalAdmin on SQLite and PostgreSQL: records, key edits, roles, usage filters and the audit log."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import UNSET, Actor
from llmgw.auth.changes import AuthChange
from llmgw.errors import Conflict, NotFound, UsageError
from llmgw.storage.tables import UsageRecord

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[AuthChange]:
    return []


@pytest.fixture
def admin(engine: Engine, clock: Clock, changes: list[AuthChange]) -> LocalAdmin:
    actor = Actor(name="local:alice", kind="local")
    return LocalAdmin(engine, actor, "cli", clock=clock, on_change=changes.append)


def _jsonable(value: object) -> None:
    """A record survives the standard library's JSON encoder unchanged (no datetimes, decimals)."""
    assert json.loads(json.dumps(value)) == value


def test_records_are_plain_json_and_never_hold_the_digest(admin: LocalAdmin) -> None:
    admin.users_create("Ann@Example.com", name="Ann")
    created = admin.keys_create("ci", user="ann@example.com", expires=timedelta(days=1), rpm=5)
    _jsonable(created)
    assert created["key"].startswith("llmgw_") and created["prefix"] == created["key"][:12]
    assert created["expires_at"] == "2026-01-02T12:00:00+00:00"
    assert created["created_at"] == "2026-01-01T12:00:00+00:00"
    shown = admin.keys_show(created["prefix"])
    assert "key" not in shown and "digest" not in shown
    assert {k: v for k, v in created.items() if k != "key"} == shown
    for record in (admin.keys_list(), admin.users_list(), admin.whoami()):
        _jsonable(record)
    assert admin.users_show("ann@example.com")["keys"] == 1


def test_keys_update_changes_only_the_given_settings(
    admin: LocalAdmin, clock: Clock, changes: list[AuthChange]
) -> None:
    key = admin.keys_create("svc", rpm=10, tpm=1000, models=["local/a"])
    changes.clear()
    after = admin.keys_update(key["id"], rpm=20)
    assert (after["rpm"], after["tpm"], after["models"]) == (20, 1000, ["local/a"])
    assert changes == [AuthChange(keys=(uuid.UUID(key["id"]),))]  # running servers are told
    after = admin.keys_update(key["prefix"], tpm=None, models=["local/b", " local/c "])
    assert (after["rpm"], after["tpm"], after["models"]) == (20, None, ["local/b", "local/c"])
    when = T0 + timedelta(days=3)
    assert admin.keys_update(key["id"], expires_at=when)["expires_at"] == when.isoformat()
    assert admin.keys_update(key["id"], expires_at=None, models=None)["expires_at"] is None
    assert admin.keys_show(key["id"])["models"] is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, UsageError),  # nothing to change
        ({"rpm": 0}, UsageError),
        ({"tpm": -5}, UsageError),
        ({"models": []}, UsageError),
        ({"models": ["has space"]}, UsageError),
        ({"expires_at": T0 - timedelta(seconds=1)}, UsageError),
        ({"expires_at": T0 + timedelta(days=40_000)}, UsageError),
        ({"expires_at": datetime(2027, 1, 1)}, UsageError),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_keys_update_refuses_bad_values_and_writes_nothing(
    admin: LocalAdmin, kwargs: dict[str, object], error: type[Exception]
) -> None:
    key = admin.keys_create("svc", rpm=10)
    with pytest.raises(error):
        admin.keys_update(key["id"], **kwargs)  # type: ignore[arg-type]
    assert admin.keys_show(key["id"]) == {k: v for k, v in key.items() if k != "key"}
    assert [e["action"] for e in admin.audit_list()] == ["keys.create"]


def test_a_revoked_or_unknown_key_cannot_be_edited(admin: LocalAdmin) -> None:
    key = admin.keys_create("svc")
    admin.keys_revoke(key["id"])
    with pytest.raises(Conflict):
        admin.keys_update(key["id"], rpm=1)
    with pytest.raises(NotFound):
        admin.keys_update("0123456789abcdef", rpm=1)


def test_set_role_and_idempotent_changes(admin: LocalAdmin, changes: list[AuthChange]) -> None:
    user = admin.users_create("bob@example.com")
    assert user["role"] == "user"
    changes.clear()
    assert admin.users_set_role("bob@example.com", "admin")["role"] == "admin"
    assert changes == [AuthChange(users=(uuid.UUID(user["id"]),))]
    admin.users_set_role(user["id"], "admin")  # no change: no second audit row
    with pytest.raises(UsageError):
        admin.users_set_role("bob@example.com", "root")
    assert admin.users_show("bob@example.com")["role"] == "admin"
    assert [e["action"] for e in admin.audit_list()] == ["users.set_role", "users.create"]


def test_every_change_is_audited_with_actor_source_and_no_secret(
    engine: Engine, admin: LocalAdmin, clock: Clock
) -> None:
    admin.users_create("carol@example.com")
    key = admin.keys_create("svc", user="carol@example.com", rpm=3)
    clock.now += timedelta(minutes=1)
    admin.keys_update(key["id"], rpm=4)
    rotated = admin.keys_rotate(key["id"])
    admin.keys_revoke(rotated["id"])
    admin.keys_revoke(rotated["id"])  # already revoked: nothing new to record
    admin.users_disable("carol@example.com")
    admin.users_enable("carol@example.com")
    entries = admin.audit_list()
    assert [e["action"] for e in entries] == [
        "users.enable",
        "users.disable",
        "keys.revoke",
        "keys.rotate",
        "keys.update",
        "keys.create",
        "users.create",
    ]
    assert {(e["actor"], e["actor_kind"], e["source"]) for e in entries} == {
        ("local:alice", "local", "cli")
    }
    update = entries[4]
    assert update["target"] == key["prefix"]
    assert update["detail"] == {"id": key["id"], "rpm": {"from": 3, "to": 4}}
    assert entries[3]["detail"]["new_prefix"] == rotated["prefix"]
    with engine.connect() as conn:
        dump = json.dumps(
            [list(r) for r in conn.execute(sa.text("SELECT * FROM audit_log"))], default=str
        )
    for secret in (key["key"], rotated["key"]):
        assert secret not in dump and secret[12:] not in dump
    # filters
    assert [e["action"] for e in admin.audit_list(action="keys.*")] == [
        "keys.revoke",
        "keys.rotate",
        "keys.update",
        "keys.create",
    ]
    assert len(admin.audit_list(action="users.create")) == 1
    assert len(admin.audit_list(since=T0 + timedelta(seconds=30))) == 5
    assert admin.audit_list(actor="someone-else") == []
    assert len(admin.audit_list(limit=2)) == 2
    with pytest.raises(UsageError):
        admin.audit_list(action="keys'; drop")
    with pytest.raises(UsageError):
        admin.audit_list(limit=0)


def test_a_failed_action_writes_no_audit_row(admin: LocalAdmin) -> None:
    admin.users_create("dan@example.com")
    with pytest.raises(Conflict):
        admin.users_create("dan@example.com")
    with pytest.raises(NotFound):
        admin.keys_create("x", user="nobody@example.com")
    with pytest.raises(NotFound):
        admin.keys_revoke("llmgw_AAAAAA")
    assert [e["action"] for e in admin.audit_list()] == ["users.create"]


def _usage(engine: Engine, **cols: object) -> None:
    base: dict[str, object] = {
        "request_id": uuid.uuid4().hex,
        "created_at": T0,
        "endpoint": "chat",
        "provider": "local",
        "model": "m1",
        "stream": False,
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "cost": Decimal("0.0000000010"),
        "latency_ms": 10.0,
        "status": 200,
    }
    base.update(cols)
    with engine.begin() as conn:
        conn.execute(sa.insert(UsageRecord.__table__).values(**base))  # type: ignore[attr-defined]


def test_usage_stats_by_hour_and_status_with_filters(engine: Engine, admin: LocalAdmin) -> None:
    key = admin.keys_create("svc")
    kid = uuid.UUID(key["id"])
    _usage(engine, key_id=kid)
    _usage(engine, key_id=kid, created_at=T0 + timedelta(hours=1), status=502)
    _usage(engine, model="m2", model_version="v2", created_at=T0 + timedelta(minutes=5))
    hours = admin.usage_stats(by="hour")
    assert [(r["hour"], r["requests"]) for r in hours] == [
        ("2026-01-01 12:00", 2),
        ("2026-01-01 13:00", 1),
    ]
    _jsonable(hours)
    assert hours[0]["cost"] == "0.0000000020"
    statuses = {r["status"]: r["requests"] for r in admin.usage_stats(by="status")}
    assert statuses == {200: 2, 502: 1}
    assert [r["requests"] for r in admin.usage_stats(by="day", key=key["prefix"])] == [2]
    assert admin.usage_stats(by="day", status=502)[0]["errors"] == 1
    assert admin.usage_stats(by="provider", model="local/m2:v2")[0]["requests"] == 1
    assert admin.usage_stats(by="provider", model="m2:v1") == []
    assert admin.usage_stats(by="day", provider="other") == []
    assert len(admin.usage_stats(by="day", since=T0 + timedelta(minutes=30))) == 1
    with pytest.raises(UsageError):
        admin.usage_stats(by="week")
    with pytest.raises(NotFound):
        admin.usage_stats(user="nobody@example.com")


def test_usage_recent_is_newest_first_with_key_prefix(engine: Engine, admin: LocalAdmin) -> None:
    key = admin.keys_create("svc")
    _usage(engine, key_id=uuid.UUID(key["id"]), request_id="old")
    _usage(engine, request_id="new", created_at=T0 + timedelta(seconds=1), ttft_ms=1.5)
    recent = admin.usage_recent(limit=10)
    _jsonable(recent)
    assert [(r["request_id"], r["key_prefix"]) for r in recent] == [
        ("new", None),
        ("old", key["prefix"]),
    ]
    assert recent[1]["cost"] == "0.0000000010" and recent[0]["ttft_ms"] == 1.5
    assert len(admin.usage_recent(limit=1)) == 1
    with pytest.raises(UsageError):
        admin.usage_recent(limit=0)


def test_providers_status_from_the_table_is_not_live(engine: Engine, admin: LocalAdmin) -> None:
    assert admin.providers_status() == []
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO provider_status (provider, model, status, error_rate, updated_at) "
                "VALUES ('local', 'm1', 'healthy', 0.0, '2026-01-01 12:00:00')"
            )
        )
    (row,) = admin.providers_status()
    assert row["live"] is False and row["status"] == "healthy"
    _jsonable(row)


def test_unset_is_not_none() -> None:
    assert UNSET is not None and repr(UNSET) == "UNSET" and not isinstance(UNSET, int)


def test_the_light_provider_status_table_matches_the_model() -> None:
    """LocalAdmin reads provider_status without SQLModel: same columns, same types."""
    from llmgw.admin.local import _provider_status
    from llmgw.storage.tables import ProviderStatus

    def kind(t: object) -> object:  # llmgw's own types exactly; else String...
        return type(t) if type(t).__module__.startswith("llmgw") else t._type_affinity  # type: ignore[attr-defined]

    light = {c.name: kind(c.type) for c in _provider_status().columns}
    model = {c.name: kind(c.type) for c in ProviderStatus.__table__.columns}  # type: ignore[attr-defined]
    assert light == model


def _refuse_audit_rows(engine: Engine) -> None:
    """Make every INSERT into audit_log fail in the database itself (a trigger)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit log refused'; END $$"
                )
            )
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit log refused'); END"
                )
            )


def test_a_failing_audit_write_leaves_no_change_behind(
    engine: Engine, admin: LocalAdmin, changes: list[AuthChange]
) -> None:
    """Each change and its audit row are one transaction: when the database refuses the audit
    row, the key, the user, the revocation, the rotation, the edit and the role change are all
    rolled back, the caller gets one DatabaseError, and no running server is told anything."""
    from llmgw.errors import DatabaseError

    admin.users_create("ann@example.com")
    key = admin.keys_create("app", user="ann@example.com", rpm=5)
    keys, users = admin.keys_list(include_revoked=True), admin.users_list()
    entries = admin.audit_list(limit=1000)
    changes.clear()
    _refuse_audit_rows(engine)
    for attempt in (
        lambda: admin.keys_create("new"),
        lambda: admin.keys_revoke(key["id"]),
        lambda: admin.keys_rotate(key["id"]),
        lambda: admin.keys_update(key["id"], rpm=50),
        lambda: admin.users_create("bob@example.com"),
        lambda: admin.users_disable("ann@example.com"),
        lambda: admin.users_set_role("ann@example.com", "admin"),
    ):
        with pytest.raises(DatabaseError, match="writing the audit log"):
            attempt()
    assert admin.keys_list(include_revoked=True) == keys
    assert admin.users_list() == users
    assert admin.audit_list(limit=1000) == entries
    assert changes == []  # nothing announced: nothing changed
