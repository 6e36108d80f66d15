"""``GET /v1/models``, ``GET /v1/models/{id}`` and ``GET /api/models``: the routable models and
aliases this key may use.

All read the cached catalog (never an upstream); ``/api/models`` adds what the catalog knows of
each model (``ModelCatalog.describe``). Ids contain ``/`` (``provider/model``), so the
one-model route takes the rest of the path; an id the key may not use is a 404 like an unknown
one, so a key cannot probe for models outside its allow-list.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from llmgw.errors import ModelNotFound
from llmgw.server.pipeline import KeyOperation
from llmgw.server.state import Gateway

__all__ = ["ListModels", "ModelCatalogView", "RetrieveModel"]


class ListModels(KeyOperation):
    """The model list, filtered by the key's allow-list."""

    path = "/v1/models"

    async def answer(self, g: Gateway, key: Any, scope: Scope) -> object:
        """``{"object": "list", "data": [...]}``."""
        data = [e for e in g.catalog.entries() if key.allows_model(str(e["id"]))]
        return {"object": "list", "data": data}


class RetrieveModel(KeyOperation):
    """One model or alias by id, if the key may use it."""

    path = "/v1/models/{model:path}"

    async def answer(self, g: Gateway, key: Any, scope: Scope) -> object:
        """The catalog entry; 404 for an id that is unknown or outside the key's allow-list."""
        model_id: str = scope["path_params"]["model"]
        if key.allows_model(model_id):
            for entry in g.catalog.entries():
                if entry["id"] == model_id:
                    return entry
        raise ModelNotFound(
            f"model {model_id[:200]!r} does not exist or is not available to this key",
            param="model",
            hint="GET /v1/models lists the models this key may use",
        )


class ModelCatalogView(KeyOperation):
    """The catalog with context windows, capabilities, prices and flags, for the key's models."""

    path = "/api/models"

    async def answer(self, g: Gateway, key: Any, scope: Scope) -> object:
        """``{"object": "list", "data": [...], "providers": [...], "ttl_seconds"}``."""
        return g.catalog.describe(key.allows_model)
