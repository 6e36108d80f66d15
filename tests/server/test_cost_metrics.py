"""Cost and budget series on /metrics (what deploy/grafana's usage dashboard and the budget alert
rules of deploy/prometheus read): a running gateway's scrape after priced chat calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from llmgw.budgets.store import BudgetStore
from llmgw.config import BudgetSettings, Settings

pytestmark = pytest.mark.timeout(60)

BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
PRICED = {"currency": "RUB", "prices": {"gpt-4o-mini": {"input": 100000, "output": 100000}}}
"""0.1 RUB per token."""


@pytest.fixture
def gateway() -> Iterator[Callable[[Settings], Any]]:
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    running: list[Any] = []

    def start(settings: Settings) -> Any:
        running.append(serve_in_thread(create_app(settings)))
        return running[-1]

    yield start
    for s in running:
        s.stop()


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_cost_by_provider_model_currency_and_each_budgets_spend_and_limit_are_scraped(
    make_settings: Callable[..., Settings],
    emulator: Any,
    test_engine: Engine,
    make_key: Callable[..., Any],
    gateway: Any,
) -> None:
    budgeted, free = make_key("budgeted"), make_key("free")
    _, budget = BudgetStore(test_engine).set_budget(
        "key", budgeted.info.id, "month", "RUB", Decimal(1000), hard_stop=True
    )
    settings = make_settings(emulator.url, provider=PRICED).model_copy(
        update={"budgets": BudgetSettings(refresh_interval=0.2)}
    )
    gw = gateway(settings)
    before = _samples(gw.url)
    assert _value(before, "llmgw_budget_spend", budget=str(budget.id), scope="key",
                  period="month", currency="RUB") == 0  # fmt: skip
    assert _value(before, "llmgw_budget_limit", budget=str(budget.id), scope="key",
                  period="month", currency="RUB") == 1000  # fmt: skip
    assert not [k for k in before if k[0] == "llmgw_cost_total"]  # nothing spent yet
    tokens = 0
    with httpx.Client(timeout=30) as c:
        for secret in (budgeted.secret, budgeted.secret, free.secret):
            r = c.post(
                f"{gw.url}/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {secret}"},
            )
            assert r.status_code == 200, r.text
            tokens += r.json()["usage"]["total_tokens"]
    per_request = tokens / 3 / 10
    deadline = time.monotonic() + 10
    while True:  # the usage record (and with it the cost) lands right after the answer
        after = _samples(gw.url)
        cost = _value(after, "llmgw_cost_total", provider="openai", model="gpt-4o-mini",
                      currency="RUB")  # fmt: skip
        if cost is not None and cost >= tokens / 10 - 1e-9 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert cost == pytest.approx(tokens / 10)  # all three keys' requests, in RUB
    spend = _value(after, "llmgw_budget_spend", budget=str(budget.id), scope="key",
                   period="month", currency="RUB")  # fmt: skip
    assert spend == pytest.approx(2 * per_request)  # only the budgeted key's two requests
    assert _value(after, "llmgw_budget_refused_total") == 0
    assert [k for k in after if k[0] == "llmgw_budget_spend"] == [
        ("llmgw_budget_spend", frozenset(
            {"budget": str(budget.id), "scope": "key", "period": "month", "currency": "RUB"}.items()
        ))
    ]  # fmt: skip
