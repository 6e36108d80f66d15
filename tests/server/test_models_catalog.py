"""``GET /v1/models`` from the model catalog: configured models, discovered ones, aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmgw.config import Settings
from llmgw.server.app import gateway_of

from .conftest import running


def two_providers(home: Path, db_file: str, url: str) -> Settings:
    def prov(name: str, models: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "openai",
            "base_url": f"{url}/v1",
            "api_key_env": "EMULATOR_API_KEY",
            "models": models,
        }

    return Settings(
        home=home,
        database={"url": db_file},
        providers=[prov("a", ["gpt-4o-mini"]), prov("b", [])],
        aliases={"smart": ["a/gpt-4o-mini", "b/disc-1"]},
    )


async def test_models_lists_discovered_models_and_aliases(
    upstream_factory: Callable[..., Any],
    home: Path,
    db_file: str,
    test_engine: Any,
    auth: dict[str, str],
    make_settings: Any,
) -> None:
    up = upstream_factory(models=("disc-1", "disc-2"))
    settings = two_providers(home, db_file, up.url)  # b has no models list: ask the upstream
    async with running(settings) as (app, c):
        catalog = gateway_of(app).catalog
        for _ in range(200):
            if catalog.refreshed_at is not None:
                break
            await asyncio.sleep(0.01)
        r = await c.get("/v1/models", headers=auth)
        assert r.status_code == 200
        ids = [m["id"] for m in r.json()["data"]]
        assert ids == ["a/gpt-4o-mini", "b/disc-1", "b/disc-2", "smart"]
