"""Schema migrations with Alembic, configured in code so they work from a wheel or a checkout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from llmgw.errors import UsageError

__all__ = [
    "alembic_config",
    "check_revision",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_current",
    "upgrade",
]


def alembic_config(engine: Engine) -> Config:
    """An Alembic config whose scripts are the packaged ``llmgw.migrations``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("llmgw.migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; an unknown revision is a ``UsageError``."""
    with _revision_errors(revision):
        command.upgrade(alembic_config(engine), revision)


def check_revision(engine: Engine, revision: str) -> None:
    """Refuse an unknown ``revision`` with the same ``UsageError`` a migration would raise."""
    with _revision_errors(revision):
        ScriptDirectory.from_config(alembic_config(engine)).get_revisions(revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` empties it)."""
    with _revision_errors(revision):
        command.downgrade(alembic_config(engine), revision)


@contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    try:
        yield
    except CommandError as exc:
        raise UsageError(
            f"cannot migrate to revision {revision!r}: {str(exc).splitlines()[0][:200]}",
            hint="`llmgw db current` shows the current and newest revisions; 'base' and 'head' always exist",
        ) from None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    """The newest revision this version of llmgw knows."""
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision."""
    return current_revision(engine) == head_revision(engine)


def table_names(engine: Engine) -> list[str]:
    """Tables present in the database (for diagnostics)."""
    return sorted(sa.inspect(engine).get_table_names())
