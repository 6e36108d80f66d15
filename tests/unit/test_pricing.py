"""Cost right by default: the bundled price table, per-provider overrides, YandexGPT's billing
units, versions priced apart, one currency per provider and never a converted price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from llmgw.admin.records import price_records
from llmgw.config import ProviderConfig, Settings
from llmgw.routing.resolve import Resolver
from llmgw.usage.price_table import TABLE, TABLE_VERSION
from llmgw.usage.pricing import cost_of, currency_of, effective_prices, price_for


def _p(kind: str = "openai", **kw: Any) -> ProviderConfig:
    return ProviderConfig(name=kw.pop("name", "p"), kind=kind, **kw)


def test_a_known_model_costs_its_bundled_price_without_any_configuration() -> None:
    p = _p()
    price = price_for(p, "gpt-4o-mini")
    assert price is not None and price.source == "bundled" and price.currency == "USD"
    assert price.as_of and price.reference  # every entry says when and where it was read
    assert cost_of(p, "gpt-4o-mini", 1_000_000, 1_000_000) == Decimal("0.75")
    assert cost_of(p, "gpt-4o-mini", 1000, 500) == Decimal("0.00045")


def test_an_unknown_model_is_unpriced_not_free_by_accident() -> None:
    p = _p(models=["llama3:8b", "gpt-4o"])
    assert price_for(p, "llama3:8b") is None and cost_of(p, "llama3:8b", 10, 10) == 0
    rows = {r["model"]: r for r in price_records([p])}
    assert rows["llama3:8b"]["source"] == "unpriced" and rows["llama3:8b"]["input"] is None
    assert rows["gpt-4o"]["source"] == "bundled" and rows["gpt-4o"]["input"] == "2.5"
    assert all(r["table_version"] == TABLE_VERSION for r in rows.values())


def test_bundled_prices_can_be_switched_off_for_a_local_server() -> None:
    p = _p(bundled_prices=False, models=["gpt-4o-mini"])
    assert price_for(p, "gpt-4o-mini") is None
    assert [m for m, _ in effective_prices(p)] == ["gpt-4o-mini"]


def test_a_configured_price_overrides_the_table_and_may_name_a_version() -> None:
    p = _p(
        prices={
            "gpt-4o-mini": {"input": 1, "output": 2},
            "gpt-4o:2024-08-06": {"input": 3, "output": 3},
        }
    )
    price = price_for(p, "gpt-4o-mini")
    assert price is not None and price.source == "config" and price.input == 1
    assert cost_of(p, "gpt-4o-mini", 1_000_000, 0) == Decimal(1)
    assert cost_of(p, "gpt-4o", 1_000_000, 0, "2024-08-06") == Decimal(3)  # the version's own
    assert cost_of(p, "gpt-4o", 1_000_000, 0, "2024-05-13") == Decimal("2.5")  # the table's


def test_yandex_bills_units_rounded_up_per_request_in_roubles() -> None:
    p = _p("yandexgpt", folder_id="b1g")
    assert currency_of(p) == "RUB"
    # Lite: 1 unit a token; 10 + 5 tokens = 15 units at 0.20 RUB per 1,000
    assert cost_of(p, "yandexgpt-lite", 10, 5) == Decimal("0.003")
    # Alice AI LLM: 3 x 2.5 + 1 x 10 = 17.5 units, rounded up to 18
    assert cost_of(p, "aliceai-llm", 3, 1) == Decimal("0.0036")
    rec = next(r for r in price_records([p]) if r["model"] == "aliceai-llm")
    assert rec["units"] == {
        "per_1k_units": "0.2",
        "input_multiplier": "2.5",
        "output_multiplier": "10",
    }
    assert rec["currency"] == "RUB" and rec["input"] == "500" and rec["output"] == "2000"


def test_yandex_versions_are_priced_apart() -> None:
    """``yandexgpt:rc`` is Pro 5.1 (4 units a token), ``:latest`` and no version Pro 5 (6)."""
    p = _p("yandexgpt", folder_id="b1g")
    assert cost_of(p, "yandexgpt", 1000, 0, "rc") == Decimal("0.8")
    assert cost_of(p, "yandexgpt", 1000, 0, "latest") == Decimal("1.2")
    assert cost_of(p, "yandexgpt", 1000, 0) == Decimal("1.2")
    # a model URI a client wrote names the branch in its path
    assert cost_of(p, "gpt://b1g/yandexgpt/rc", 1000, 0) == Decimal("0.8")
    assert cost_of(p, "gpt://b1g/yandexgpt-lite/latest", 1000, 0) == Decimal("0.2")


def test_the_resolver_memo_keeps_versions_apart() -> None:
    s = Settings(providers=[{"name": "ya", "kind": "yandexgpt", "folder_id": "b1g"}])
    r = Resolver(s)
    assert r.cost("ya", "yandexgpt", 1000, 0, "rc") == Decimal("0.8")
    assert r.cost("ya", "yandexgpt", 1000, 0, "latest") == Decimal("1.2")
    assert r.cost("ya", "yandexgpt", 1000, 0, "rc") == Decimal("0.8")


def test_gigachat_is_priced_in_roubles() -> None:
    p = _p("gigachat")
    price = price_for(p, "GigaChat-2-Max")
    assert price is not None and price.currency == "RUB" and price.note  # evidence is weak
    assert cost_of(p, "GigaChat-2-Max", 1000, 1000) == Decimal("3.9")


def test_one_currency_per_provider_and_never_a_converted_price() -> None:
    # a yandexgpt account billed in USD: the rouble table does not apply, it is unpriced
    usd = _p("yandexgpt", folder_id="b1g", currency="USD")
    assert currency_of(usd) == "USD" and price_for(usd, "yandexgpt-lite") is None
    # the currency of the configured prices is the provider's
    rub = _p(prices={"m": {"input": 1, "output": 1, "currency": "RUB"}})
    assert currency_of(rub) == "RUB" and price_for(rub, "gpt-4o-mini") is None
    with pytest.raises(ValidationError, match="one provider bills in one currency"):
        _p(
            prices={
                "a": {"input": 1, "output": 1, "currency": "RUB"},
                "b": {"input": 1, "output": 1, "currency": "USD"},
            }
        )
    with pytest.raises(ValidationError, match="one provider bills in one currency"):
        _p(currency="USD", prices={"a": {"input": 1, "output": 1, "currency": "RUB"}})


def test_every_bundled_entry_has_a_currency_date_and_source() -> None:
    for kind, entries in TABLE.items():
        for model, e in entries.items():
            assert e.currency in ("USD", "RUB"), (kind, model)
            assert e.as_of and e.source, (kind, model)
            assert e.input >= 0 and e.output >= 0


def test_the_documented_overrides_load_and_price_as_documented(tmp_path: Any) -> None:
    import re
    from pathlib import Path

    from llmgw.config import load_settings

    doc = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
    # the price overrides' example: the first TOML block (later ones configure reports)
    block = re.findall(r"```toml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)[0]
    assert "[[providers]]" in block
    cfg = tmp_path / "config.toml"
    cfg.write_text(block, encoding="utf-8")
    s = load_settings(cfg).settings
    giga, ya, ollama = (s.provider(n) for n in ("giga", "ya", "ollama"))
    pro = price_for(giga, "GigaChat-2-Pro")
    assert pro is not None and pro.source == "config" and pro.currency == "RUB"
    mx = price_for(giga, "GigaChat-2-Max")
    assert mx is not None and mx.source == "bundled"
    assert cost_of(ya, "yandexgpt", 1_000_000, 0, "rc") == Decimal(800)
    assert cost_of(ya, "yandexgpt", 1000, 0, "latest") == Decimal("1.2")  # still the table's
    free = price_for(ollama, "llama3:8b")
    assert free is not None and free.input == 0  # priced at zero: not flagged
    assert price_for(ollama, "gpt-4o-mini") is None  # bundled_prices = false


def test_the_self_service_page_rows_carry_their_providers_currency(engine: Any) -> None:
    """``usage_by_day_and_model`` (the /account/usage page): each row names its currency."""
    from sqlmodel import Session

    from llmgw.storage.tables import UsageRecord
    from llmgw.usage.reports import usage_by_day_and_model

    with Session(engine) as s:
        for i, (provider, model, cost) in enumerate(
            [("openai", "gpt-4o", "0.5"), ("giga", "GigaChat-2", "2"), ("gone", "m", "1")]
        ):
            s.add(
                UsageRecord(request_id=f"r{i}", provider=provider, model=model, cost=Decimal(cost))
            )
        s.add(UsageRecord(request_id="refused", status=400))
        s.commit()
    rows = usage_by_day_and_model(engine, since=None, currencies={"openai": "USD", "giga": "RUB"})
    got = {r["model"]: (r["currency"], r["cost"]) for r in rows}
    assert got["openai/gpt-4o"] == ("USD", Decimal("0.5"))
    assert got["giga/GigaChat-2"] == ("RUB", Decimal(2))
    assert got["gone/m"] == ("XXX:gone", Decimal(1))
    assert got["-"] == (None, Decimal(0))
