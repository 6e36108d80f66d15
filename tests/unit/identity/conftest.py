"""Fixtures for the identity services: a hand-moved UTC clock and a user to grant things to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo, UserService

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A wall clock (aware UTC datetimes) that moves only when the test says so."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    """A ``Clock`` at 2026-01-01 12:00 UTC."""
    return Clock()


@pytest.fixture
def alice(engine: Engine) -> UserInfo:
    """A plain user."""
    return UserService(engine).create("alice@example.com", "Alice")


@pytest.fixture
def root(engine: Engine) -> UserInfo:
    """An admin user."""
    return UserService(engine).create("root@example.com", "Root", role="admin")
