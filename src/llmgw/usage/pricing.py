"""The effective price of a model and the cost of one request, as an exact Decimal.

A price comes from the provider's configuration (``[providers.prices."MODEL"]``) when it names
one, else from the bundled table (``llmgw.usage.price_table``, unless ``bundled_prices = false``);
a model in neither is *unpriced*: its requests are recorded at cost 0 and ``llmgw providers list``
and ``llmgw providers prices`` flag it. ``model:version`` is looked up first, then ``model``, in
the configuration and then in the table. YandexGPT model URIs (``gpt://folder/model/branch``) are
looked up as ``model:branch``.

A provider bills in one currency (``currency_of``); costs are never converted between currencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from llmgw.config import ModelPrice, ProviderConfig
from llmgw.usage.price_table import KIND_CURRENCY, TABLE, TABLE_VERSION, Units

__all__ = [
    "TABLE_VERSION",
    "ModelPrice",
    "Price",
    "cost_of",
    "currency_of",
    "effective_prices",
    "price_for",
]

_PER = Decimal(1_000_000)
# The usage table stores NUMERIC(20, 10): keep ten decimal places, rounded half-even.
_QUANTUM = Decimal("0.0000000001")


@dataclass(frozen=True, slots=True)
class Price:
    """The price in force for one model at one provider, and where it came from."""

    input: Decimal
    """Per 1M prompt tokens."""
    output: Decimal
    """Per 1M completion tokens."""
    currency: str
    source: str
    """``config`` or ``bundled``."""
    entry: str
    """The key it was found under (``model`` or ``model:version``)."""
    as_of: str | None = None
    reference: str | None = None
    units: Units | None = None
    note: str | None = None


def currency_of(provider: ProviderConfig) -> str:
    """The currency ``provider`` bills in: its ``currency``, else that of its configured prices,
    else its kind's (RUB for GigaChat and YandexGPT, USD for OpenAI-compatible)."""
    if provider.currency is not None:
        return provider.currency
    for p in provider.prices.values():
        if p.currency is not None:
            return p.currency
    return KIND_CURRENCY.get(provider.kind, "USD")


def _names(model: str, version: str | None) -> list[str]:
    """The keys to try, most specific first."""
    if model.startswith(("gpt://", "emb://")):  # gpt://<folder>/<model>[/<branch>]
        parts = model.split("/")[3:]
        if parts:
            model, version = parts[0], (parts[1] if len(parts) > 1 else version)
    if version is None and ":" in model:
        model, _, version = model.partition(":")
    return [f"{model}:{version}", model] if version else [model]


def price_for(
    provider: ProviderConfig | None, model: str | None, version: str | None = None
) -> Price | None:
    """The price in force for ``model`` (``version``) at ``provider``; ``None``: unpriced."""
    if provider is None or not model:
        return None
    names = _names(model, version)
    currency = currency_of(provider)
    for name in names:
        configured = provider.prices.get(name)
        if configured is not None:
            return Price(configured.input, configured.output, currency, "config", name)
    if not provider.bundled_prices:
        return None
    table = TABLE.get(provider.kind, {})
    for name in names:
        listed = table.get(name)
        if listed is not None and listed.currency == currency:  # never a converted price
            return Price(
                listed.input,
                listed.output,
                currency,
                "bundled",
                name,
                listed.as_of,
                listed.source,
                listed.units,
                listed.note,
            )
    return None


def _cost(price: Price, prompt_tokens: int, completion_tokens: int) -> Decimal:
    p, c = max(prompt_tokens, 0), max(completion_tokens, 0)
    if price.units is not None:  # Yandex: units rounded up per request, priced per 1,000
        u = price.units
        units = (p * u.input_multiplier + c * u.output_multiplier).to_integral_value(ROUND_CEILING)
        raw = units * u.per_1k_units / 1000
    else:
        raw = (p * price.input + c * price.output) / _PER
    return raw.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


def cost_of(
    provider: ProviderConfig | None,
    model: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    version: str | None = None,
) -> Decimal:
    """Cost of one request in the provider's currency; ``Decimal(0)`` when unpriced."""
    price = price_for(provider, model, version)
    if price is None:
        return Decimal(0)
    return _cost(price, prompt_tokens, completion_tokens)


def effective_prices(provider: ProviderConfig) -> list[tuple[str, Price | None]]:
    """Every model the provider names (its ``models``, its configured prices) or the bundled table
    lists for its kind, with the price in force (``None``: unpriced), sorted by model."""
    names: dict[str, None] = dict.fromkeys(provider.models)
    names.update(dict.fromkeys(provider.prices))
    if provider.bundled_prices and currency_of(provider) == KIND_CURRENCY.get(provider.kind):
        names.update(dict.fromkeys(TABLE.get(provider.kind, {})))
    return [(n, price_for(provider, n)) for n in sorted(names, key=str.lower)]
