"""``GET /api/providers``: live health of each (provider, model) from the router."""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from llmgw.server.pipeline import KeyOperation
from llmgw.server.state import Gateway

__all__ = ["ProviderStatus"]


class ProviderStatus(KeyOperation):
    """The provider status rows.

    Any valid API key may read it, but only the rows of models its allow-list admits (directly,
    or through an alias it admits), so a key cannot learn about upstreams it cannot use.
    """

    path = "/api/providers"

    async def answer(self, g: Gateway, key: Any, scope: Scope) -> object:
        """``{"object": "list", "data": [...]}``."""

        def visible(provider: str, model: str) -> bool:
            if key.allows_model(f"{provider}/{model}"):
                return True
            return any(
                key.allows_model(alias)
                and any(
                    t.provider == provider and t.model == model
                    for t in g.resolver.candidates(alias)
                )
                for alias in g.resolver.aliases
            )

        rows = [r for r in g.router.health.snapshot() if visible(r["provider"], r["model"])]
        return {"object": "list", "data": rows}
