"""The alert classifier follows providers and aliases stored at runtime (the "providers
changed" hook, ``server/reload.py``): ``alerts.model`` (the default alias
``alerts-classifier``) naming nothing yet stores alerts unclassified; once a provider and the
alias are stored through the admin operations, the next alert is classified through them and
priced with the stored provider's prices, without a restart (issue 16 part 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings
from llmgw.server.app import gateway_of
from llmgw.storage.db import make_engine
from tests.alerts.amdata import am_alert, am_payload
from tests.alerts.test_classification import HOOK, query, running, until


async def test_a_stored_provider_becomes_the_classifiers_model_without_a_restart(
    db_url: str,
    alert_settings: Callable[..., Settings],
    hook_auth: dict[str, str],
    llm: Any,
) -> None:
    settings = alert_settings(db_url, retry_backoff=0)
    assert settings.alerts.model == "alerts-classifier" and settings.aliases == {}
    async with running(settings) as (app, c):
        r = await c.post(HOOK, json=am_payload(am_alert("First")), headers=hook_auth)
        assert r.status_code == 200
        await until(lambda: query(db_url, "SELECT id FROM alerts WHERE cls_status = 'skipped'"))
        assert llm.stats.requests == 0
        engine = make_engine(db_url)
        try:
            admin = LocalAdmin(engine, Actor.local(), settings=settings)
            admin.providers_add(
                "llm",
                "openai",
                {
                    "base_url": llm.base_url,
                    "models": ["gpt-4o-mini"],
                    "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
                },
            )
            admin.aliases_add("alerts-classifier", ["llm/gpt-4o-mini"])
        finally:
            engine.dispose()
        g = gateway_of(app)
        await until(lambda: "alerts-classifier" in g.live_settings.aliases)
        r = await c.post(HOOK, json=am_payload(am_alert("Second")), headers=hook_auth)
        assert r.status_code == 200
        (alert,) = await until(
            lambda: query(db_url, "SELECT * FROM alerts WHERE cls_status = 'ok'")
        )
        assert await asyncio.to_thread(g.flush_usage, 10.0)
    assert alert["classification"]["model"] == "llm/gpt-4o-mini"
    assert llm.stats.requests == 1
    (usage,) = query(db_url, "SELECT * FROM usage WHERE endpoint = 'alerts'")
    assert (usage["provider"], usage["model"]) == ("llm", "gpt-4o-mini")
    assert float(usage["cost"]) > 0  # priced with the stored provider's prices
