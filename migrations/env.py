"""Alembic environment: runs with the engine that ``llmgw.storage.schema`` passes in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from llmgw.storage.tables import register_all

register_all()  # every table on SQLModel.metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("run migrations through `llmgw db upgrade`")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
