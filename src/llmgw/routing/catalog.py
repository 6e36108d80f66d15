"""The model catalog: what each provider really offers, cached, for ``/v1/models`` and ``/api/models``.

Every provider is asked for its models (``list_models``: OpenAI-compatible ``GET /models``,
GigaChat ``GET /models``; YandexGPT's native API lists nothing, so its adapter answers from the
config or its public catalogue) in a background task every ``interval`` seconds (the cache's TTL,
``routing.models_refresh_interval``), so no route ever waits on an upstream. A failed refresh
keeps the last good list and marks the provider ``stale`` with the reason; a provider that never
answered lists nothing until it does.

What is routable does not change with the answers: a provider with a ``models`` list in the config
offers exactly those (a configured model the upstream no longer lists is flagged ``missing`` in
``/api/models`` and logged once, and still routed: the upstream answers for itself); a provider
with an empty list offers what its upstream lists. Aliases are listed as models owned by ``llmgw``.

``entries()`` are OpenAI ``model`` objects (``/v1/models``); ``describe()`` adds, per model, the
provider, type, context window, capabilities (``llmgw.providers.modelinfo``), the price in
force (``llmgw.usage.pricing``: configured, else bundled), versions and the flags (``/api/models``, ``llmgw providers models``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmgw.config import ProviderConfig, Settings
from llmgw.errors import LlmgwError
from llmgw.providers.base import ModelCard, Provider
from llmgw.providers.modelinfo import facts_for
from llmgw.usage.pricing import price_for

if TYPE_CHECKING:
    from llmgw.providers.registry import SecretResolver

__all__ = ["ModelCatalog", "fresh_catalog"]

log = logging.getLogger("llmgw.routing.catalog")


def _entry(model_id: str, owned_by: str, created: int = 0) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def _iso(wall: float | None) -> str | None:
    return None if wall is None else datetime.fromtimestamp(wall, UTC).isoformat()


class ModelCatalog:
    """Cached model lists of every provider, and the records built from them."""

    def __init__(
        self,
        settings: Settings,
        providers: Mapping[str, Provider],
        *,
        interval: float = 300.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self.interval = interval
        self.timeout = timeout
        self._clock = clock
        self._wall = wall
        self._configure(settings)
        self._cards: dict[str, list[ModelCard]] = {}
        self._found: dict[str, list[dict[str, Any]]] = {}
        self._offered: dict[str, frozenset[str]] = {}
        self._listed_at: dict[str, float] = {}
        self._missing: dict[str, frozenset[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._asks: set[asyncio.Task[None]] = set()
        self._round: asyncio.Task[None] | None = None
        self.refreshed_at: float | None = None
        """Clock time of the last refresh round (``None`` before the first)."""
        self.errors: dict[str, str] = {}
        """Provider -> why its last refresh failed (a secret-free message)."""

    def _configure(self, settings: Settings) -> None:
        self._configs: dict[str, ProviderConfig] = {p.name: p for p in settings.providers}
        self._static: list[dict[str, Any]] = []
        self._ask: list[str] = []
        for p in settings.providers:
            if p.models:
                self._static.extend(_entry(f"{p.name}/{m}", p.name) for m in p.models)
            else:
                self._ask.append(p.name)
        self._alias_targets = {
            name: [c if isinstance(c, str) else c.target for c in cands]
            for name, cands in settings.aliases.items()
        }
        self._aliases = [_entry(a, "llmgw") for a in settings.aliases]

    def reconfigure(self, settings: Settings, changed: Iterable[str]) -> None:
        """Take a new provider set (providers managed at runtime): forget the lists of the
        providers that are gone or ``changed``, and ask those that are new or changed now."""
        self._configure(settings)
        changed = set(changed)
        for cache in (self._cards, self._found, self._offered, self._listed_at, self._missing):
            for name in [n for n in cache if n not in self._configs or n in changed]:
                del cache[name]
        for name in [n for n in self.errors if n not in self._configs]:
            del self.errors[name]
        if self._task is None:
            self.start()
        else:
            loop = asyncio.get_running_loop()
            for name in changed & set(self._configs):
                task = loop.create_task(self._refresh_one(name), name=f"llmgw-models-{name}")
                self._asks.add(task)
                task.add_done_callback(self._asks.discard)

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

    def _lists(self, name: str) -> bool:
        provider = self._providers.get(name)
        return provider is not None and getattr(provider, "upstream_listing", True)

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
        self._cards[name] = cards
        self._found[name] = [_entry(f"{name}/{c.id}", name, c.created) for c in cards]
        self._offered[name] = frozenset(c.id for c in cards)
        self._listed_at[name] = self._wall()
        cfg = self._configs.get(name)
        if cfg is not None and cfg.models and self._lists(name):
            missing = frozenset(
                m for m in cfg.models if m.partition(":")[0] not in self._offered[name]
            )
            for m in sorted(missing - self._missing.get(name, frozenset())):
                log.warning("provider %s no longer lists the configured model %s", name, m)
            self._missing[name] = missing

    async def _refresh_all(self) -> None:
        await asyncio.gather(*(self._refresh_one(n) for n in self._configs))
        self.refreshed_at = self._clock()

    async def refresh(self) -> None:
        """Ask every provider now, concurrently; keep old lists on failure. Calls made while a
        round runs wait for that round instead of starting another."""
        if self._round is None or self._round.done():
            self._round = asyncio.get_running_loop().create_task(self._refresh_all())
        await asyncio.shield(self._round)

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Refresh now and then every ``interval`` seconds, in a background task (on the loop)."""
        if self._task is None and self._configs:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="llmgw-model-catalog"
            )

    async def aclose(self) -> None:
        """Stop the background refresh."""
        for task in (self._task, self._round):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._round = None

    def window_of(self, provider: str, model: str) -> int | None:
        """The context window of ``provider``'s ``model`` (``None``: not known)."""
        cfg = self._configs.get(provider)
        if cfg is None:
            return None
        name = model.partition(":")[0]
        card = next((c for c in self._cards.get(provider, []) if c.id == name), None)
        kind = card.extra.get("type") if card is not None else None
        facts = facts_for(
            cfg.kind,
            name,
            configured=cfg.model_info.get(model) or cfg.model_info.get(name),
            upstream_type=kind if isinstance(kind, str) else None,
        )
        return facts.context_window

    # -- records ---------------------------------------------------------------------------

    def _model_record(
        self, cfg: ProviderConfig, model: str, card: ModelCard | None
    ) -> dict[str, Any]:
        name = cfg.name
        lists = self._lists(name) and name in self._offered
        listed = (model.partition(":")[0] in self._offered[name]) if lists else None
        upstream_type = card.extra.get("type") if card is not None else None
        facts = facts_for(
            cfg.kind,
            model,
            configured=cfg.model_info.get(model),
            upstream_type=upstream_type if isinstance(upstream_type, str) else None,
        )
        price = price_for(cfg, model)
        versions = card.extra.get("versions") if card is not None else None
        kind = "embeddings" if facts.embeddings else "chat" if facts.chat else "other"
        return {
            "id": f"{name}/{model}",
            "object": "model",
            "created": card.created if card is not None else 0,
            "provider": name,
            "model": model,
            "owned_by": card.owned_by if card is not None else name,
            "type": kind,
            "alias": False,
            "targets": [],
            "configured": bool(cfg.models),
            "listed": listed,
            "missing": listed is False,
            "context_window": facts.context_window,
            "capabilities": facts.capabilities(),
            "price": None
            if price is None
            else {
                "input": format(price.input, "f"),
                "output": format(price.output, "f"),
                "currency": price.currency,
                "per": "1M tokens",
                "source": price.source,
            },
            "versions": list(versions) if isinstance(versions, list) else None,
        }

    def _provider_record(self, cfg: ProviderConfig, count: int) -> dict[str, Any]:
        name = cfg.name
        listed_at = self._listed_at.get(name)
        return {
            "provider": name,
            "kind": cfg.kind,
            "source": "upstream" if self._lists(name) else "catalogue",
            "refreshed_at": _iso(listed_at),
            "age_seconds": None if listed_at is None else round(self._wall() - listed_at, 1),
            "stale": name in self.errors or listed_at is None,
            "error": self.errors.get(name),
            "models": count,
            "missing": sorted(self._missing.get(name, ())),
        }

    def describe(self, allows: Callable[[str], bool] = lambda model_id: True) -> dict[str, Any]:
        """``{"object": "list", "data": [model records], "providers": [provider records],
        "ttl_seconds"}``: the models ``allows`` admits (by id), and the providers they are on."""
        data: list[dict[str, Any]] = []
        providers: list[dict[str, Any]] = []
        for cfg in self._configs.values():
            cards = {c.id: c for c in self._cards.get(cfg.name, [])}
            names = list(cfg.models) if cfg.models else list(cards)
            rows = [
                self._model_record(cfg, m, cards.get(m.partition(":")[0]))
                for m in names
                if allows(f"{cfg.name}/{m}")
            ]
            if rows or (not names and allows(f"{cfg.name}/*")):
                providers.append(self._provider_record(cfg, len(rows)))
            data.extend(rows)
        for alias, targets in self._alias_targets.items():
            if allows(alias):
                data.append(
                    {
                        **_entry(alias, "llmgw"),
                        "provider": None,
                        "model": None,
                        "type": "alias",
                        "alias": True,
                        "targets": targets,
                        "configured": True,
                        "listed": None,
                        "missing": False,
                        "context_window": None,
                        "capabilities": None,
                        "price": None,
                        "versions": None,
                    }
                )
        return {
            "object": "list",
            "data": data,
            "providers": providers,
            "ttl_seconds": self.interval,
        }


async def fresh_catalog(
    settings: Settings, secrets: SecretResolver | None = None
) -> dict[str, Any]:
    """``describe()`` of a catalog that asked every configured provider just now (the CLI
    without a server); a provider that cannot be built (no credential) is listed with the reason.
    ``secrets`` (default: environment and keyring) may also answer stored credentials."""
    from llmgw.providers.registry import SecretResolver, build_providers

    secrets = secrets if secrets is not None else SecretResolver(warn=lambda _msg: None)
    providers: dict[str, Provider] = {}
    unusable: dict[str, str] = {}
    for cfg in settings.providers:  # one unusable provider does not hide the others
        try:
            one = settings.model_copy(update={"providers": [cfg]})
            providers.update(build_providers(one, secrets))
        except LlmgwError as exc:
            unusable[cfg.name] = exc.message
    catalog = ModelCatalog(settings, providers)
    try:
        await catalog.refresh()
        catalog.errors.update(unusable)
        return catalog.describe()
    finally:
        await catalog.aclose()
        for provider in providers.values():
            await provider.aclose()
