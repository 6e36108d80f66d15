"""The one "providers changed" hook (``server/reload.py``): a provider stored while the gateway
runs appears in the prices endpoint, in the per-currency usage figures and in the budgets, as a
config-file provider does (issue 16 part 2). The alert classifier's side is in
``tests/alerts/test_stored_classifier.py``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings

SECOND_KEY = "sk-second-upstream-credential-9876543210"
RUB = {"currency": "RUB", "prices": {"extra-model": {"input": 100000, "output": 100000}}}
"""0.1 RUB per token: one request costs a few roubles."""


def _until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not applied in time"
        time.sleep(0.05)


def _admin(engine: Engine) -> tuple[LocalAdmin, str]:
    local = LocalAdmin(engine, Actor.local())
    local.users_create("root@example.com", role="admin")
    return local, str(local.keys_create("root", user="root@example.com")["key"])


def _add_second(http: httpx.Client, url: str) -> None:
    body = {"name": "second", "kind": "openai", "base_url": f"{url}/v1",
            "models": ["extra-model"], "api_key": SECOND_KEY, **RUB}  # fmt: skip
    r = http.post("/admin/v1/providers", json=body)
    assert r.status_code == 200, r.text


def _chat(http: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http.post("/v1/chat/completions", json=body)


def test_a_stored_provider_is_priced_and_its_costs_counted_in_its_currency(
    gateway_server: Any, test_engine: Engine, upstream_factory: Callable[..., Any]
) -> None:
    _, key = _admin(test_engine)
    second = upstream_factory(api_key=SECOND_KEY, models=("extra-model",))
    with httpx.Client(
        base_url=gateway_server.url, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        before = http.get("/admin/v1/providers/prices").json()["data"]
        assert {r["provider"] for r in before} == {"openai"}
        _add_second(http, second.url)

        def second_prices() -> list[dict[str, Any]]:
            rows = http.get("/admin/v1/providers/prices").json()["data"]
            return [r for r in rows if r["provider"] == "second"]

        (row,) = _until(second_prices)
        assert (row["model"], row["currency"], row["source"]) == ("extra-model", "RUB", "config")
        assert Decimal(row["input"]) == 100000 and row["offered"] is True
        _until(lambda: _chat(http, "second/extra-model").status_code == 200)
        assert _chat(http, "openai/gpt-4o-mini").status_code == 200

        def by_provider() -> dict[str, Any]:
            rows = http.get("/admin/v1/usage/stats", params={"by": "provider"}).json()["data"]
            return {r["provider"]: r for r in rows}

        stats = _until(lambda: (s := by_provider()).keys() >= {"second", "openai"} and s)
    # The stored provider's costs are in its own currency, not an unknown one.
    assert set(stats["second"]["costs"]) == {"RUB"} and Decimal(stats["second"]["costs"]["RUB"])
    assert set(stats["openai"]["costs"]) == {"USD"}


def test_spend_on_a_stored_provider_counts_against_a_budget(
    make_settings: Callable[..., Settings],
    emulator: Any,
    test_engine: Engine,
    upstream_factory: Callable[..., Any],
) -> None:
    """A RUB budget with a hard stop: the stored provider bills in RUB (the config provider in
    USD), so its spend must reach the budget and the next request be refused with 402."""
    from llmgw.budgets.store import BudgetStore
    from llmgw.config import BudgetSettings
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    local, key = _admin(test_engine)
    me = local.keys_list()[0]
    BudgetStore(test_engine).set_budget(
        "key", uuid.UUID(me["id"]), "day", "RUB", Decimal("0.5"), hard_stop=True
    )
    settings = make_settings(emulator.url).model_copy(
        update={"budgets": BudgetSettings(refresh_interval=0.2)}
    )
    second = upstream_factory(api_key=SECOND_KEY, models=("extra-model",))
    server = serve_in_thread(create_app(settings))
    try:
        with httpx.Client(
            base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {key}"}
        ) as http:
            assert _chat(http, "openai/gpt-4o-mini").status_code == 200  # USD: not this budget
            assert _chat(http, "openai/gpt-4o-mini").status_code == 200
            _add_second(http, second.url)
            first = _until(
                lambda: (r := _chat(http, "second/extra-model")).status_code != 404 and r
            )
            assert first.status_code == 200  # a few roubles: over the 0.5 RUB budget
            refused = _until(
                lambda: (r := _chat(http, "second/extra-model")).status_code == 402 and r
            )
    finally:
        server.stop()
    err = refused.json()["error"]
    assert err["code"] == "budget_exceeded" and "RUB" in err["message"]
