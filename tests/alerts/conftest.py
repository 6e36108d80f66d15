"""Alert fixtures: the webhook token's headers, gateway settings with the alert service, and the
Slack, PagerDuty and Rootly emulators as publishing targets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import Settings
from llmgw.emulators import pagerduty, rootly, slack
from llmgw.emulators.runner import RunningServer, serve_in_thread
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


CHANNEL = "C0123456789"
WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Emulators:
    """The three emulators, each on its own port."""

    pd: RunningServer
    slack: RunningServer
    rootly: RunningServer

    def emu(self, name: str) -> Any:
        return getattr(self, name).app.state.emulator

    def targets(self, *, slack_webhook: bool = False) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {"type": "pagerduty", "name": "pd", "routing_key": pagerduty.DEFAULT_ROUTING_KEY,
             "events_url": f"{self.pd.url}/v2/enqueue"},
            {"type": "slack", "name": "slack", "bot_token": slack.DEFAULT_BOT_TOKEN,
             "channel": CHANNEL, "api_url": f"{self.slack.url}/api"},
            {"type": "rootly", "name": "rootly", "api_key": rootly.DEFAULT_API_KEY,
             "base_url": self.rootly.url},
        ]  # fmt: skip
        if slack_webhook:
            out.append({"type": "slack", "name": "slack-hook",
                        "webhook_url": f"{self.slack.url}{WEBHOOK_PATH}"})  # fmt: skip
        return out

    def received(self, name: str, path: str = "") -> list[Any]:
        return list(self.emu(name).recorder.select(path=path))


@pytest.fixture
def emulators() -> Iterator[Emulators]:
    """The PagerDuty, Slack and Rootly emulators on free ports (``timeout`` faults hold 3 s)."""
    servers = [
        serve_in_thread(pagerduty.create_app(hang_seconds=3)),
        serve_in_thread(slack.create_app(hang_seconds=3)),
        serve_in_thread(rootly.create_app(hang_seconds=3)),
    ]
    try:
        yield Emulators(*servers)
    finally:
        for s in servers:
            s.stop()
