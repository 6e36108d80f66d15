"""Fixtures for the identity services: a hand-moved UTC clock and a user to grant things to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo, UserService
from llmgw.identity.signing import SigningKeys
from llmgw.identity.tokens import TokenService

ISSUER = "https://gw.example"
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


@pytest.fixture
def signing(engine: Engine, clock: Clock) -> SigningKeys:
    """Signing keys encrypted under a fixed test secret."""
    return SigningKeys(engine, b"s" * 32, clock=clock)


@pytest.fixture
def tokens(engine: Engine, signing: SigningKeys, clock: Clock) -> TokenService:
    """A TokenService with issuer https://gw.example and the default lifetimes."""
    return TokenService(engine, signing, issuer=ISSUER, clock=clock)
