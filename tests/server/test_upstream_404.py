"""An upstream's 404 over real HTTP: an alias falls back to its next candidate, a direct request
gets a truthful 404 ``model_not_found`` (the ``openai`` package raises ``NotFoundError``), and the
breaker never opens on it (docs/routing.md, "Upstream errors")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from llmgw.config import Settings

from .conftest import UPSTREAM_KEY, running

MSG: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def two_upstreams(
    upstream_factory: Callable[..., Any],
    home: Path,
    db_file: str,
    test_engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """``lacking`` lists gpt-9 in its config but its server does not have it; ``good`` serves."""
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)
    lacking, good = upstream_factory(), upstream_factory()

    def provider(name: str, url: str, models: list[str]) -> dict[str, Any]:
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
        usage={"flush_interval": 0.05},
        routing={"failure_threshold": 1, "max_retries": 2},
        providers=[
            provider("lacking", lacking.url, ["gpt-9"]),
            provider("good", good.url, ["gpt-4o-mini"]),
        ],
        aliases={"smart": ["lacking/gpt-9", "good/gpt-4o-mini"]},
    )


async def test_alias_falls_back_past_an_upstream_404_and_a_direct_request_gets_404(
    two_upstreams: Settings, key: Any
) -> None:
    async with running(two_upstreams) as (app, client):
        oc = openai.AsyncOpenAI(
            api_key=key.secret,
            base_url="http://llmgw/v1",
            # the in-process httpx client; openai 3 types its own fork (httpx2), same interface
            http_client=client,  # type: ignore[arg-type]
            max_retries=0,
        )
        for _ in range(3):  # threshold 1: a charged breaker would open after the first
            r = await oc.chat.completions.with_raw_response.create(model="smart", messages=MSG)
            assert r.headers["x-llmgw-served-by"] == "good/gpt-4o-mini"
        for _ in range(3):  # never turned into a 503 circuit_open
            with pytest.raises(openai.NotFoundError) as info:
                await oc.chat.completions.create(model="lacking/gpt-9", messages=MSG)
            assert info.value.code == "model_not_found"
            assert "upstream lacking does not serve model 'gpt-9'" in info.value.message
        status = (
            await client.get("/api/providers", headers={"Authorization": f"Bearer {key.secret}"})
        ).json()
        lacking = [row for row in status["data"] if row["provider"] == "lacking"]
        assert all(row["breaker"] == "closed" for row in lacking), lacking
