"""Alert fixtures: the webhook token's headers and gateway settings with the alert service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import Settings
from tests.alerts.amdata import WEBHOOK_TOKEN


@pytest.fixture
def hook_auth() -> dict[str, str]:
    """Headers carrying the webhook's bearer token."""
    return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@pytest.fixture
def alert_settings(home: Path) -> Callable[..., Settings]:
    """``build(db_url, **alerts)``: settings with the webhook token and no providers; the
    database at ``db_url`` is migrated."""
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    def build(
        db_url: str,
        *,
        providers: list[Any] | None = None,
        top: dict[str, Any] | None = None,
        **alerts: Any,
    ) -> Settings:
        eng = make_engine(db_url)
        upgrade(eng)
        eng.dispose()
        return Settings(
            home=home,
            database={"url": db_url},
            usage={"flush_interval": 0.05},
            alerts={"webhook_token": WEBHOOK_TOKEN, "poll_interval": 0.05, **alerts},
            providers=providers or [],
            **(top or {}),
        )

    return build


@pytest.fixture
def llm(make_upstream: Callable[..., Any]) -> Any:
    """The OpenAI emulator the classifier talks to (``.stats``, ``.server.app.state.emulator``)."""
    return make_upstream()


@pytest.fixture
def classifying_settings(
    alert_settings: Callable[..., Settings], llm: Any
) -> Callable[..., Settings]:
    """``build(db_url, **alerts)``: alert settings with provider ``openai`` on the emulator and
    the classifier alias ``alerts-classifier`` -> ``openai/gpt-4o-mini``."""

    def build(db_url: str, *, top: dict[str, Any] | None = None, **alerts: Any) -> Settings:
        provider = llm.provider_config(
            "openai",
            models=["gpt-4o-mini"],
            prices={"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
        )
        extra = {"aliases": {"alerts-classifier": ["openai/gpt-4o-mini"]}, **(top or {})}
        alerts.setdefault("retry_backoff", 0)
        return alert_settings(db_url, providers=[provider], top=extra, **alerts)

    return build
