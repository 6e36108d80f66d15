"""The migration copies every table the schema has, whatever migration added it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from llmgw.storage.canonical import table_specs
from llmgw.storage.db import make_engine
from llmgw.storage.schema import upgrade
from llmgw.storage.transfer import Migration
from tests.migrate_data import generate, migrated_sqlite


def test_the_copied_tables_are_the_tables_the_newest_migration_creates(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    created = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    specs = table_specs()  # raises on a column type without a copy rule
    assert {s.name for s in specs} == created
    order = [s.name for s in specs]
    assert order.index("users") < order.index("api_keys")  # parents first


@pytest.mark.postgres
def test_a_table_added_later_is_copied_and_checked_without_code_changes(
    tmp_path: Path, pg_url: str
) -> None:
    """A new table (as a later migration would add) with a foreign key, a JSON and a blob."""
    from sqlmodel import SQLModel

    from llmgw.storage.tables import register_all
    from llmgw.storage.types import JSONType, UTCDateTime

    register_all()
    meta = sa.MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(meta)
    extra = sa.Table(
        "zz_sessions",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("data", JSONType),
        sa.Column("blob", sa.LargeBinary),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    src = tmp_path / "src.db"
    migrated_sqlite(src)
    generate(src, usage=10)
    sqlite_engine = make_engine(f"sqlite:///{src}")
    extra.create(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO zz_sessions (user_id, data, blob, at) SELECT id, '{\"a\": 1}', "
            "x'00ff10', '2026-12-03 10:00:00.000000' FROM users"
        )
    sqlite_engine.dispose()
    pg_engine = make_engine(pg_url)
    upgrade(pg_engine)
    extra.create(pg_engine)
    pg_engine.dispose()

    specs = table_specs(meta)
    assert [s.name for s in specs].index("zz_sessions") > [s.name for s in specs].index("users")
    migration = Migration(src, pg_url, specs=specs)
    migration.open()
    try:
        report = migration.run()
    finally:
        migration.close()
    tables = {t.spec.name: t.as_dict() for t in report.tables}
    assert tables["zz_sessions"]["copied"] == 50 and tables["zz_sessions"]["match"]
    assert report.ok and report.sequences["zz_sessions.id"] == 51
