"""Web page fixtures: a migrated SQLite gateway with no providers, users with passwords, the
app under its lifespan, and an httpx client that keeps cookies."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from llmgw.config import Settings

PASSWORD = "correct horse battery staple"
BASE = "http://testserver"


@pytest.fixture
def db_file(home: Path) -> str:
    """The SQLite URL of the gateway under test."""
    return f"sqlite:///{home / 'web.db'}"


@pytest.fixture
def web_engine(db_file: str) -> Iterator[Engine]:
    """A migrated engine on the gateway's database."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    eng = make_engine(db_file)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def make_user(web_engine: Engine) -> Callable[..., Any]:
    """``make_user(email, role="user", password=PASSWORD)``: a user who can sign in."""
    from llmgw.auth.users import UserService
    from llmgw.identity.passwords import set_password

    def make(email: str, role: str = "user", password: str | None = PASSWORD) -> Any:
        user = UserService(web_engine).create(email, role=role)
        if password is not None:
            set_password(web_engine, email, password)
        return user

    return make


@pytest.fixture
def web_settings(home: Path, db_file: str, web_engine: Engine) -> Settings:
    """Gateway settings on the migrated database (no upstream providers needed by the pages)."""
    return Settings(home=home, database={"url": db_file})


@pytest.fixture
def fake_monotonic() -> list[float]:
    """A monotonic clock the test moves by hand: ``clock[0] += 10``."""
    return [1000.0]


@pytest.fixture
async def web_app(web_settings: Settings, fake_monotonic: list[float]) -> AsyncIterator[Any]:
    """The gateway app with its lifespan running (throttle counters on the fake clock)."""
    from llmgw.server import create_app

    app = create_app(web_settings, clock=lambda: fake_monotonic[0])
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def browser(web_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app that keeps cookies and does not follow redirects."""
    transport = httpx.ASGITransport(app=web_app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def hidden(html: str, name: str) -> str:
    """The value of the hidden input ``name`` in ``html``."""
    m = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', html)
    assert m, f"no hidden input {name!r}"
    import html as h

    return h.unescape(m.group(1))


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, next_url: str = "/account"
) -> httpx.Response:
    """Load the sign-in page and post the form as a browser would."""
    page = await client.get("/login", params={"next": next_url})
    return await client.post(
        "/login",
        data={
            "csrf": hidden(page.text, "csrf"),
            "next": next_url,
            "email": email,
            "password": password,
        },
    )
