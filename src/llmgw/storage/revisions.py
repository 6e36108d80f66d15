"""The newest schema revision, read from the version scripts as text (no SQLAlchemy, no Alembic).

Answering "is the schema current?" this way keeps Alembic out of every admin command, and keeps
SQLAlchemy out of the commands that read SQLite with the standard library (``admin/quick.py``).
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["VERSION_TABLE", "scripted_head"]

VERSION_TABLE = "alembic_version"  # Alembic's default; migrations/env.py keeps it
_REVISION = re.compile(r"^revision(?:\s*:[^=]+)?\s*=\s*['\"]([^'\"]+)['\"]\s*$", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.M)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def scripted_head() -> str | None:
    """The one head of the version scripts' chain, read as text; ``None`` when unsure (then
    ask Alembic: tests/migrations checks both answers agree)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (resources.files("llmgw.migrations") / "versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        text = script.read_text(encoding="utf-8")
        rev, down = _REVISION.findall(text), _DOWN.findall(text)
        if len(rev) != 1 or len(down) != 1:
            return None
        revisions.add(rev[0])
        parents.update(_QUOTED.findall(down[0]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None
