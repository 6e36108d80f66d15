"""The bundled price table: what a model costs when the configuration names no price.

Versioned as a whole (``TABLE_VERSION``, bumped on every change of an entry; ``llmgw providers
prices`` prints it). Entries are keyed by the provider *kind* and the provider-side model name,
optionally ``model:version`` (a version's own price wins over the model's). Each entry carries its
currency, the date its figure was read (``as_of``) and its source; a comment says what the source
does and does not confirm. Prices are per 1M tokens, except YandexGPT's, which Yandex bills in
*units*: ``ceil(prompt x input multiplier + completion x output multiplier)`` units per request at
a price per 1,000 units (shared/reference/yandexgpt.md §8).

Currencies are never converted: OpenAI-compatible prices are in USD (net of VAT, as OpenAI quotes
them), GigaChat and YandexGPT prices in RUB (including VAT, as Sber and Yandex quote them to
Russian customers). An operator whose contract says otherwise overrides the entry
(``[providers.prices."MODEL"]``) or the provider's ``currency``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["KIND_CURRENCY", "TABLE", "TABLE_VERSION", "Listed", "Units"]

TABLE_VERSION = "2026.12.03"
"""The table's version: the date of its newest change."""

KIND_CURRENCY: dict[str, str] = {"openai": "USD", "gigachat": "RUB", "yandexgpt": "RUB"}
"""The currency a provider of each kind bills in, unless its configuration says otherwise."""


@dataclass(frozen=True, slots=True)
class Units:
    """YandexGPT's billing: ``per_1k_units`` for every 1,000 units, rounded up per request."""

    per_1k_units: Decimal
    input_multiplier: Decimal
    output_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class Listed:
    """One bundled price: per 1M input and output tokens (``units``: derived from them)."""

    input: Decimal
    output: Decimal
    currency: str
    as_of: str
    source: str
    units: Units | None = None
    note: str | None = None


def _usd(inp: str, out: str, note: str | None = None) -> Listed:
    # Source: https://openai.com/api/pricing (standard tier, per 1M tokens, USD net of VAT),
    # read 2025-08; OpenAI-compatible resellers usually charge the same for the same model name.
    return Listed(Decimal(inp), Decimal(out), "USD", "2025-08", "openai.com/api/pricing", note=note)


# YandexGPT: 0.20 RUB (incl. VAT) per 1,000 units of the text-generation SKU
# (foundation_models.text_generation.v1, synchronous mode). The multipliers are Yandex's own
# (shared/reference/yandexgpt.md §8, from en/_pricing/yandexgpt/usd-generating_new.md and
# usd-generating_units.md); the rouble figure is the one yandex.cloud/ru/docs/ai-studio/pricing
# quoted for YandexGPT Lite (1 unit a token) in 2025 and was not re-read for this table.
_YA_UNIT = Decimal("0.20")
_YA_SOURCE = "yandex.cloud/ru/docs/ai-studio/pricing; multipliers: reference/yandexgpt.md §8"


def _ya(m_in: str, m_out: str | None = None, note: str | None = None) -> Listed:
    mi, mo = Decimal(m_in), Decimal(m_out if m_out is not None else m_in)
    per_token = _YA_UNIT / 1000 * 1_000_000  # RUB per 1M tokens at one unit a token
    return Listed(
        per_token * mi,
        per_token * mo,
        "RUB",
        "2025-11",
        _YA_SOURCE,
        units=Units(_YA_UNIT, mi, mo),
        note=note,
    )


# GigaChat: Sber's own tariff page (developers.sber.ru/docs/ru/gigachat/api/tariffs) could not be
# read for shared/reference/gigachat.md §9; these figures are its weak evidence, RUB per 1M
# tokens incl. VAT: Lite packages of 1,000 RUB per 5M tokens (a user's report), Max packages of
# 15,600 RUB per 8M tokens (third-party code). Pro has no evidence at all: 1,500 RUB per 1M is
# Sber's published 2024 package rate as remembered, not confirmed. Override when you know yours.
_GIGA_SOURCE = "reference/gigachat.md §9 (unconfirmed)"


def _giga(per_1m: str, note: str) -> Listed:
    p = Decimal(per_1m)
    return Listed(p, p, "RUB", "2025-10", _GIGA_SOURCE, note=note)


_GIGA_LITE = _giga("200", "package price: 1,000 RUB per 5M tokens")
_GIGA_PRO = _giga("1500", "no public evidence; remembered package rate")
_GIGA_MAX = _giga("1950", "package price: 15,600 RUB per 8M tokens")

TABLE: dict[str, dict[str, Listed]] = {
    "openai": {
        "gpt-4o": _usd("2.50", "10.00"),
        "gpt-4o-mini": _usd("0.15", "0.60"),
        "gpt-4.1": _usd("2.00", "8.00"),
        "gpt-4.1-mini": _usd("0.40", "1.60"),
        "gpt-4.1-nano": _usd("0.10", "0.40"),
        "gpt-5": _usd("1.25", "10.00"),
        "gpt-5-mini": _usd("0.25", "2.00"),
        "gpt-5-nano": _usd("0.05", "0.40"),
        "o3": _usd("2.00", "8.00"),
        "o3-mini": _usd("1.10", "4.40"),
        "o4-mini": _usd("1.10", "4.40"),
        "gpt-3.5-turbo": _usd("0.50", "1.50"),
        "text-embedding-3-small": _usd("0.02", "0"),
        "text-embedding-3-large": _usd("0.13", "0"),
    },
    "gigachat": {
        "GigaChat": _GIGA_LITE,
        "GigaChat-2": _GIGA_LITE,
        "GigaChat-Pro": _GIGA_PRO,
        "GigaChat-2-Pro": _GIGA_PRO,
        "GigaChat-Max": _GIGA_MAX,
        "GigaChat-2-Max": _GIGA_MAX,
    },
    "yandexgpt": {
        # YandexGPT Lite 5 in every branch: 1 unit a token.
        "yandexgpt-lite": _ya("1"),
        # YandexGPT Pro: 5 in latest and deprecated (6 units), 5.1 in rc (4 units; its small
        # fixed add-on per request is not modelled).
        "yandexgpt": _ya("6"),
        "yandexgpt:rc": _ya("4", note="Pro 5.1; the fixed add-on per request is not counted"),
        "yandexgpt-32k": _ya("6", note="historical (generation 4)"),
        # Alice AI LLM: input 2.5 units, output 10 units a token.
        "aliceai-llm": _ya("2.5", "10"),
        "llama-lite": _ya("1"),
        "llama": _ya("6"),
        "gemma-3-27b-it": _ya("2"),
        # The next two are billed on an alternative SKU whose rouble price was not found: the
        # base SKU's price is assumed.
        "qwen3-235b-a22b-fp8": _ya("2.5", note="alternative SKU priced as the base SKU"),
        "gpt-oss-120b": _ya("1.5", note="alternative SKU priced as the base SKU"),
        "gpt-oss-20b": _ya("0.5", note="alternative SKU priced as the base SKU"),
    },
}
"""Kind -> model (or ``model:version``) -> its bundled price."""
