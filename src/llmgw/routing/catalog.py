"""The routable model list for ``GET /v1/models``: configured models, discovered ones, aliases.

A provider with a ``models`` list in the config offers exactly those. A provider with an empty
list is asked (``list_models``) in the background, every ``interval`` seconds; the answer is
cached, so ``/v1/models`` never waits on an upstream, and a failed refresh keeps the last good
list (a provider that never answered lists nothing until it does). Aliases are listed as models
owned by ``llmgw``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from llmgw.config import Settings
from llmgw.errors import LlmgwError
from llmgw.providers.base import Provider

__all__ = ["ModelCatalog"]

log = logging.getLogger("llmgw.routing.catalog")


def _entry(model_id: str, owned_by: str, created: int = 0) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


class ModelCatalog:
    """Cached model entries (OpenAI ``model`` objects) for every routable name."""

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, Provider],
        *,
        interval: float = 300.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._static: list[dict[str, Any]] = []
        self._ask: list[str] = []
        for p in settings.providers:
            if p.models:
                self._static.extend(_entry(f"{p.name}/{m}", p.name) for m in p.models)
            else:
                self._ask.append(p.name)
        self._aliases = [_entry(a, "llmgw") for a in settings.aliases]
        self._found: dict[str, list[dict[str, Any]]] = {}
        self._offered: dict[str, frozenset[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self.refreshed_at: float | None = None
        """Clock time of the last refresh round (``None`` before the first)."""
        self.errors: dict[str, str] = {}
        """Provider -> why its last refresh failed (a secret-free message)."""

    def entries(self) -> list[dict[str, Any]]:
        """Every model entry, in config order, then discovered models, then aliases."""
        found = [e for name in self._ask for e in self._found.get(name, [])]
        return [*self._static, *found, *self._aliases]

    def offers(self, provider: str, model: str) -> bool:
        """Whether ``provider``'s last model list (asked of the upstream) holds ``model``."""
        return model in self._offered.get(provider, ())

    def ids(self) -> list[str]:
        """The ids of ``entries()``."""
        return [str(e["id"]) for e in self.entries()]

    async def _refresh_one(self, name: str) -> None:
        provider = self._providers.get(name)
        if provider is None:
            return
        try:
            cards = await asyncio.wait_for(provider.list_models(), self.timeout)
        except (LlmgwError, TimeoutError, OSError) as exc:
            reason = exc.message if isinstance(exc, LlmgwError) else type(exc).__name__
            if self.errors.get(name) != reason:
                log.warning("model list of %s not refreshed: %s", name, reason)
            self.errors[name] = reason
            return
        self.errors.pop(name, None)
        self._found[name] = [_entry(f"{name}/{c.id}", name, c.created) for c in cards]
        self._offered[name] = frozenset(c.id for c in cards)

    async def refresh(self) -> None:
        """Ask every provider without a configured list, concurrently; keep old lists on failure."""
        await asyncio.gather(*(self._refresh_one(n) for n in self._ask))
        self.refreshed_at = self._clock()

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Refresh now and then every ``interval`` seconds, in a background task (on the loop)."""
        if self._task is None and self._ask:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="llmgw-model-catalog"
            )

    async def aclose(self) -> None:
        """Stop the background refresh."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
