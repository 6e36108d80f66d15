"""Model prices from the config and the cost of one request, as an exact Decimal."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from llmgw.config import ModelPrice, ProviderConfig

__all__ = ["ModelPrice", "cost_of", "price_for"]

_PER = Decimal(1_000_000)
# The usage table stores NUMERIC(20, 10): keep ten decimal places, rounded half-even.
_QUANTUM = Decimal("0.0000000001")


def price_for(provider: ProviderConfig | None, model: str | None) -> ModelPrice | None:
    """The configured price of ``model`` at ``provider``, or ``None`` when it is unpriced.

    The exact model name wins; ``model:version`` falls back to the price of ``model``.
    """
    if provider is None or not model or not provider.prices:
        return None
    price = provider.prices.get(model)
    if price is None and ":" in model:
        price = provider.prices.get(model.split(":", 1)[0])
    return price


def cost_of(
    provider: ProviderConfig | None, model: str | None, prompt_tokens: int, completion_tokens: int
) -> Decimal:
    """Cost of one request in the model's configured currency; ``Decimal(0)`` when unpriced."""
    price = price_for(provider, model)
    if price is None:
        return Decimal(0)
    raw = (max(prompt_tokens, 0) * price.input + max(completion_tokens, 0) * price.output) / _PER
    return raw.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)
