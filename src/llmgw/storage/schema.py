"""Schema migrations with Alembic, configured in code so they work from a wheel or a checkout.

Whether the schema is current is answered without importing Alembic (about a fifth of an admin
command's start-up): the stored revision is one query, the newest is read from the version
scripts' ``revision``/``down_revision`` lines. Alembic loads only to migrate, and whenever the
scripts are not one plain chain (tests/migrations checks both answers agree).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.errors import UsageError
from llmgw.storage.revisions import VERSION_TABLE, scripted_head

if TYPE_CHECKING:
    from alembic.config import Config

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("llmgw.migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; an unknown revision is a ``UsageError``."""
    from alembic import command

    with _revision_errors(revision):
        command.upgrade(alembic_config(engine), revision)


def check_revision(engine: Engine, revision: str) -> None:
    """Refuse an unknown ``revision`` with the same ``UsageError`` a migration would raise."""
    from alembic.script import ScriptDirectory

    with _revision_errors(revision):
        ScriptDirectory.from_config(alembic_config(engine)).get_revisions(revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` (``base`` empties it)."""
    from alembic import command

    with _revision_errors(revision):
        command.downgrade(alembic_config(engine), revision)


@contextmanager
def _revision_errors(revision: str) -> Iterator[None]:
    from alembic.util import CommandError

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
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        version = sa.table(VERSION_TABLE, sa.column("version_num", sa.String()))
        stored = list(conn.execute(sa.select(version.c.version_num)).scalars())
        if len(stored) <= 1:
            return stored[0] if stored else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()  # raises: several heads


def head_revision(engine: Engine) -> str | None:
    """The newest revision this version of llmgw knows."""
    head = scripted_head()
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision."""
    return current_revision(engine) == head_revision(engine)


def table_names(engine: Engine) -> list[str]:
    """Tables present in the database (for diagnostics)."""
    return sorted(sa.inspect(engine).get_table_names())
