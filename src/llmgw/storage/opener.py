"""``EngineOpener``: a database engine opened on first use, from any thread, once.

``llmgw dash`` on a current SQLite file paints its first screen from ``admin/quick.py`` (the
standard library's ``sqlite3``) and opens the SQLAlchemy engine afterwards, in a worker: SQLAlchemy
and the schema check are about a tenth of a second of start-up that the first frame never needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["EngineOpener", "resolve"]


class EngineOpener:
    """Calls ``open`` on the first ``__call__`` (under a lock) and returns that engine ever after."""

    def __init__(self, url: str, open: Callable[[], Engine]) -> None:  # noqa: A002
        self.url = url
        """The database URL ``open`` connects to."""
        self._open = open
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        """Whether the engine exists yet."""
        return self._engine is not None

    def __call__(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._open()
        return self._engine

    def dispose(self) -> None:
        """Close the engine's connections, if it was opened."""
        if self._engine is not None:
            self._engine.dispose()


def resolve(engine: Engine | EngineOpener) -> Engine:
    """The engine itself, opening it first when it is an ``EngineOpener``."""
    return engine() if isinstance(engine, EngineOpener) else engine
