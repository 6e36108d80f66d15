"""Which model names get breaker and health state of their own (bounded; never a caller's string).

A provider with a ``models`` list in the config can only be asked for those names, so each gets its
own breaker and health row. A provider with ``models = []`` passes any client-sent name through;
giving each distinct name its own state would let clients grow memory, ``provider_status`` rows and
``GET /api/providers`` without bound, and would show one caller's strings to every other key. So
on such a provider a name is *tracked* (own breaker, own health row) only when the upstream itself
lists it (``offered``: the model catalog's last ``list_models`` answer), and at most ``max_tracked``
names per provider are, least recently used first out (its breaker and health row are dropped).
Every other name shares one breaker and one health row per provider, named ``SHARED`` (``*``).

Cost: configured providers pay one dict look-up per attempt; pass-through providers one ordered-dict
look-up and ``move_to_end``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["SHARED", "TrackedModels"]

SHARED = "*"
"""The model name of the state shared by a pass-through provider's untracked names."""


class TrackedModels:
    """The state key (model name or ``SHARED``) of each (provider, model) the router tries."""

    def __init__(
        self,
        passthrough: Iterable[str],
        *,
        max_tracked: int,
        offered: Callable[[str, str], bool] = lambda provider, model: False,
        on_evict: Callable[[str, str], None] = lambda provider, model: None,
    ) -> None:
        """``passthrough``: providers with ``models = []``; ``offered(provider, model)``: whether
        the upstream lists that model; ``on_evict`` drops an evicted name's state."""
        if max_tracked < 1:
            raise ValueError("max_tracked must be >= 1")
        self.max_tracked = max_tracked
        self.offered = offered
        self.on_evict = on_evict
        self._lru: dict[str, OrderedDict[str, None]] = {p: OrderedDict() for p in passthrough}

    def key(self, provider: str, model: str) -> str:
        """``model`` when it has state of its own, else ``SHARED``."""
        lru = self._lru.get(provider)
        if lru is None:  # a configured list: bounded by the config
            return model
        if model in lru:
            lru.move_to_end(model)
            return model
        if not self.offered(provider, model):
            return SHARED
        lru[model] = None
        if len(lru) > self.max_tracked:
            old, _ = lru.popitem(last=False)
            self.on_evict(provider, old)
        return model

    def add_passthrough(self, provider: str) -> None:
        """Track ``provider`` as one with ``models = []`` (added at runtime)."""
        self._lru.setdefault(provider, OrderedDict())

    def tracked(self, provider: str) -> list[str]:
        """The names ``provider`` tracks now, least recently used first (empty if configured)."""
        return list(self._lru.get(provider, ()))
