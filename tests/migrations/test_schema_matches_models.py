"""The migrations build exactly the schema the SQLModel tables describe, on SQLite and PostgreSQL,
and downgrade to nothing and back."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from llmgw.storage.schema import current_revision, downgrade, head_revision, upgrade
from llmgw.storage.tables import register_all

register_all()  # every table on SQLModel.metadata, as the migrations see it


def _diff(engine: Engine) -> list[object]:
    from llmgw.storage.alert_tables import POSTGRES_ONLY_INDEXES

    def include(obj: object, name: str | None, kind: str, reflected: bool, other: object) -> bool:
        # migration 0009's PostgreSQL-only indexes are not in the models (test_search checks them)
        return not (kind == "index" and name in POSTGRES_ONLY_INDEXES)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": False, "include_object": include}
        )
        return list(compare_metadata(ctx, SQLModel.metadata))


def test_migrated_schema_has_no_drift_from_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision(engine)
    assert _diff(engine) == []


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert {"users", "api_keys", "usage", "provider_status"} <= set(
        sa.inspect(engine).get_table_names()
    )
    assert _diff(engine) == []


def test_the_quick_revision_check_agrees_with_alembic(engine: Engine) -> None:
    """`is_current` reads revisions without Alembic (CLI start-up); Alembic must give the same."""
    from alembic.script import ScriptDirectory

    from llmgw.storage.schema import alembic_config, is_current

    alembic_head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head_revision(engine) == alembic_head
    for migrate, current in ((downgrade, False), (upgrade, True)):
        migrate(engine, "base" if migrate is downgrade else "head")
        with engine.connect() as conn:
            stored = MigrationContext.configure(conn).get_current_revision()
        assert current_revision(engine) == stored
        assert is_current(engine) is current
