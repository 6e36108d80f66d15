"""What llmgw knows about a model without asking: context window and capabilities.

Upstreams say little about their models (OpenAI's ``/v1/models`` gives an id and an owner,
GigaChat's ``GET /models`` adds a ``type``, YandexGPT's native API lists nothing), so the model
catalog combines three sources, the first that knows winning field by field:

1. the provider's ``[providers.model_info."MODEL"]`` table in the config;
2. what the upstream's own listing says (GigaChat's ``type``: ``embedder`` is an embeddings model);
3. the table below, from the providers' documentation (``/work/shared/reference``: GigaChat
   section 4, YandexGPT section 5.2; OpenAI's model pages). A model missing here has an unknown
   (``None``) context window and capabilities guessed from its name.

``None`` means "not known", never "no".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["ModelFacts", "facts_for"]


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """A model's context window (tokens) and capabilities; ``None``: not known."""

    context_window: int | None = None
    chat: bool = True
    embeddings: bool = False
    streaming: bool = True
    tools: bool | None = None
    vision: bool | None = None

    def capabilities(self) -> dict[str, bool | None]:
        """The ``capabilities`` object of a catalog record."""
        return {
            "chat": self.chat,
            "streaming": self.streaming,
            "tools": self.tools,
            "embeddings": self.embeddings,
            "vision": self.vision,
        }


_EMBED = ModelFacts(chat=False, embeddings=True, streaming=False, tools=False, vision=False)

# (kind, name prefix) -> facts; the longest matching prefix wins. Sources in the module docstring.
_KNOWN: dict[tuple[str, str], ModelFacts] = {
    # GigaChat: 2024 docs (Lite/Pro 8192, Plus 32768); the 2 family "128 thousand" (131072).
    ("gigachat", "GigaChat"): ModelFacts(8192, tools=True, vision=False),
    ("gigachat", "GigaChat-Plus"): ModelFacts(32768, tools=True, vision=False),
    ("gigachat", "GigaChat-Pro"): ModelFacts(8192, tools=True, vision=False),
    ("gigachat", "GigaChat-Max"): ModelFacts(32768, tools=True, vision=True),
    ("gigachat", "GigaChat-2"): ModelFacts(131072, tools=True, vision=False),
    ("gigachat", "GigaChat-2-Pro"): ModelFacts(131072, tools=True, vision=True),
    ("gigachat", "GigaChat-2-Max"): ModelFacts(131072, tools=True, vision=True),
    ("gigachat", "GigaChat-3-Ultra"): ModelFacts(131072, tools=True, vision=True),
    ("gigachat", "Embeddings"): _EMBED,
    ("gigachat", "EmbeddingsGigaR"): _EMBED,
    ("gigachat", "GigaEmbeddings"): _EMBED,
    # YandexGPT (section 5.2): gen-5 Lite/Pro 32,000; Llama 8,192.
    ("yandexgpt", "yandexgpt"): ModelFacts(32000, tools=True, vision=False),
    ("yandexgpt", "yandexgpt-lite"): ModelFacts(32000, tools=True, vision=False),
    ("yandexgpt", "yandexgpt-32k"): ModelFacts(32000, tools=True, vision=False),
    ("yandexgpt", "llama"): ModelFacts(8192, tools=False, vision=False),
    ("yandexgpt", "llama-lite"): ModelFacts(8192, tools=False, vision=False),
    ("yandexgpt", "qwen3-235b"): ModelFacts(256000, tools=True, vision=False),
    ("yandexgpt", "gpt-oss"): ModelFacts(128000, tools=True, vision=False),
    ("yandexgpt", "gemma-3-27b"): ModelFacts(128000, tools=False, vision=True),
    ("yandexgpt", "text-search-"): _EMBED,
    ("yandexgpt", "text-embeddings"): _EMBED,
    # OpenAI
    ("openai", "gpt-4o"): ModelFacts(128000, tools=True, vision=True),
    ("openai", "gpt-4o-mini"): ModelFacts(128000, tools=True, vision=True),
    ("openai", "gpt-4.1"): ModelFacts(1047576, tools=True, vision=True),
    ("openai", "gpt-4-turbo"): ModelFacts(128000, tools=True, vision=True),
    ("openai", "gpt-3.5-turbo"): ModelFacts(16385, tools=True, vision=False),
    ("openai", "o1"): ModelFacts(200000, tools=True, vision=True),
    ("openai", "o3"): ModelFacts(200000, tools=True, vision=True),
    ("openai", "o4-mini"): ModelFacts(200000, tools=True, vision=True),
    ("openai", "text-embedding-"): _EMBED,
}


def _known(kind: str, model: str) -> ModelFacts | None:
    matches = [(len(p), f) for (k, p), f in _KNOWN.items() if k == kind and model.startswith(p)]
    return max(matches, key=lambda m: m[0])[1] if matches else None


def facts_for(
    kind: str,
    model: str,
    *,
    configured: Any = None,
    upstream_type: str | None = None,
) -> ModelFacts:
    """The facts of ``model`` on a provider of ``kind``: ``configured`` (a ``ModelInfo`` from the
    config) over the upstream's ``type`` over the built-in table (module docstring)."""
    base = _known(kind, model)
    if base is None:
        base = _EMBED if "embed" in model.lower() else ModelFacts()
    if upstream_type == "embedder" and not base.embeddings:
        base = _EMBED
    elif upstream_type is not None and upstream_type not in ("chat", "embedder"):
        base = ModelFacts(chat=False, streaming=False, tools=False, vision=False)
    if configured is None:
        return base
    values: dict[str, Any] = {
        name: getattr(configured, name)
        for name in ("context_window", "chat", "embeddings", "streaming", "tools", "vision")
        if getattr(configured, name, None) is not None
    }
    if not values:
        return base
    return replace(base, **values)
