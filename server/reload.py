"""Providers and aliases managed at runtime, applied to a running gateway without a restart.

``ProviderReloader`` polls the ``providers`` and ``aliases`` tables' fingerprints (every
``(name, revision)``, two small queries in a worker thread) every ``interval`` seconds, so every
instance notices a change made anywhere within about that long. On a change it loads the
enabled providers and the aliases (the config file's win a name clash), builds
the providers that are new or changed, and swaps them in on the event loop in one step: the
shared provider map (the router's and the catalog's), a new ``Resolver`` (the router's and the
pipeline's), the catalog's lists and the tracked models. Requests already past resolution keep
the provider object they hold, so in-flight calls and open streams finish on it; a provider
that was removed, disabled or replaced is closed once its transport has nothing in flight
(or after its ``total_timeout``). Nothing here runs per request.

After each swap the reloader fires the one "providers changed" hook (``ProvidersChanged``, on
``Gateway.providers_changed``) with the new ``ProviderSet``; the consumers that derive something
from the provider set subscribe to it instead of reading the config file's providers once at
start: the admin API's prices and currencies (``Gateway.live_settings``), the budget tracker's
provider -> currency map, the alert classifier's resolver, the web pages' currencies and the
metrics' label sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgw.config import AliasTarget, ProviderConfig, Settings
    from llmgw.providers.base import Provider
    from llmgw.routing.resolve import Resolver
    from llmgw.server.state import Gateway

__all__ = ["ProviderReloader", "ProviderSet", "ProvidersChanged"]

log = logging.getLogger("llmgw.server")
_RETIRE_POLL = 0.5


@dataclass(frozen=True, slots=True)
class ProviderSet:
    """What a gateway routes to now: the config file's providers and aliases plus the enabled
    stored ones (the config file winning a name clash), and the resolver built from them."""

    settings: Settings
    resolver: Resolver


Subscriber = Callable[[ProviderSet], None]


class ProvidersChanged:
    """The one hook for a changed provider or alias set.

    ``subscribe(fn)`` calls ``fn`` with the current set at once (a consumer built after the
    first reload still sees the stored providers) and again, on the event loop, after every
    change. A subscriber that raises is logged and the others still run.
    """

    def __init__(self, current: ProviderSet) -> None:
        self.current = current
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` now and after every change; returns the function that unsubscribes."""
        self._subscribers.append(fn)
        self._call(fn, self.current)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def fire(self, new: ProviderSet) -> None:
        """Make ``new`` current and tell every subscriber."""
        self.current = new
        for fn in list(self._subscribers):
            self._call(fn, new)

    @staticmethod
    def _call(fn: Subscriber, value: ProviderSet) -> None:
        try:
            fn(value)
        except Exception:  # one broken consumer must not stop the others
            log.exception("a providers-changed subscriber failed")


class ProviderReloader:
    """Keeps ``g``'s provider set equal to the config file's plus the enabled stored ones."""

    def __init__(self, g: Gateway, *, interval: float = 1.0) -> None:
        from llmgw.providers.managed import ProviderStore, sealer_for
        from llmgw.providers.stored_aliases import AliasStore

        self.g = g
        self.interval = interval
        self.store = ProviderStore(g.engine, sealer_for(g.settings))
        self.aliases = AliasStore(g.engine)
        self._seen: tuple[Any, ...] | None = None
        self._applied: dict[str, tuple[ProviderConfig, str | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()
        self._aliases: set[str] = set()
        self.reloads = 0
        """How many provider sets were applied (tests and metrics read it)."""

    def _fingerprint(self) -> tuple[Any, ...]:
        return (self.store.fingerprint(), self.aliases.fingerprint())

    async def check(self) -> bool:
        """Apply the stored providers and aliases if they changed since the last check;
        whether they did."""
        try:
            seen = await asyncio.to_thread(self._fingerprint)
            if seen == self._seen:
                return False
            stored = await asyncio.to_thread(self.store.enabled_configs)
            aliases = await asyncio.to_thread(self.aliases.as_config)
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop serving
            key = type(exc).__name__
            if key not in self._warned:
                self._warned.add(key)
                log.warning("stored providers not read: %s", getattr(exc, "message", key))
            return False
        self._apply(stored, aliases)
        self._seen = seen
        return True

    def _apply(
        self,
        stored: list[tuple[ProviderConfig, str | None]],
        aliases: dict[str, list[str | AliasTarget]] | None = None,
    ) -> None:
        from llmgw.errors import LlmgwError
        from llmgw.providers.managed import StoredSecrets, merged_settings
        from llmgw.providers.registry import build_providers
        from llmgw.routing.resolve import Resolver

        g = self.g
        merged, creds, warnings = merged_settings(g.settings, stored, aliases)
        new_aliases = set(merged.aliases) - set(g.settings.aliases)
        for w in warnings:
            if w not in self._warned:
                self._warned.add(w)
                log.warning("%s", w)
        wanted = {c.name: (c, creds[c.name]) for c, _ in stored if c.name in creds}
        changed = [n for n, v in wanted.items() if self._applied.get(n) != v]
        gone = [n for n in self._applied if n not in wanted]
        built: dict[str, Provider] = {}
        for name in changed:
            cfg, secret = wanted[name]
            one = merged.model_copy(update={"providers": [cfg]})
            try:
                built.update(build_providers(one, StoredSecrets({name: secret})))
            except LlmgwError as exc:  # unusable (no credential): left out, said once
                log.warning("stored provider %s not started: %s", name, exc.message)
        old = {n: g.providers[n] for n in (*changed, *gone) if n in g.providers}
        # One synchronous step on the loop: no request sees half a provider set.
        for name in gone:
            g.providers.pop(name, None)
        g.providers.update(built)
        for name in changed:
            if name not in built:
                g.providers.pop(name, None)
        g.resolver = Resolver(merged)
        g.router.resolver = g.resolver.candidates
        tracked = g.router.tracked
        for name in built:
            cfg = wanted[name][0]
            if tracked is not None and not cfg.models:
                tracked.add_passthrough(name)
            for m in cfg.models:
                g.router.health.register(name, m)
        for name in (*gone, *changed):
            if name not in built:
                g.router.health.forget_provider(name)
        g.scrubber.add(
            s for p in built.values() for s in getattr(getattr(p, "transport", None), "secrets", ())
        )
        g.catalog.reconfigure(merged, changed)
        g.providers_changed.fire(ProviderSet(merged, g.resolver))
        applied: dict[str, tuple[ProviderConfig, str | None]] = {}
        for name, value in wanted.items():
            if name in built or (name not in changed and name in self._applied):
                applied[name] = value
        self._applied = applied
        for name, provider in old.items():
            self._retire(name, provider)
        self.reloads += 1
        if changed or gone:
            log.info(
                "providers applied: %s",
                ", ".join([f"+{n}" for n in built] + [f"-{n}" for n in gone]) or "none",
            )
        if new_aliases != self._aliases:
            log.info("stored aliases applied: %s", ", ".join(sorted(new_aliases)) or "none")
            self._aliases = new_aliases

    def _retire(self, name: str, provider: Provider) -> None:
        task = asyncio.get_running_loop().create_task(self._close_when_idle(provider))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _close_when_idle(provider: Provider) -> None:
        transport: Any = getattr(provider, "transport", None)
        limit = float(getattr(transport, "total_timeout", 600.0) or 600.0)
        waited = 0.0
        try:
            while transport is not None and getattr(transport, "in_flight", 0) > 0:
                if waited >= limit:
                    break
                await asyncio.sleep(_RETIRE_POLL)
                waited += _RETIRE_POLL
        finally:
            with contextlib.suppress(Exception):
                await provider.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def start(self) -> None:
        """Apply the stored providers now, then watch for changes in the background."""
        await self.check()
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name="llmgw-provider-reload"
        )

    async def aclose(self) -> None:
        """Stop watching; close the retiring providers now."""
        tasks = [t for t in (self._task, *self._retiring) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._task = None
