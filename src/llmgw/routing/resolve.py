"""Model names to upstream targets: ``provider/model[:version]``, unambiguous bare names, aliases.

This is the routing core the router grows from: ``Resolver.candidates`` returns every candidate in
order (an alias lists several); ``Resolver.resolve`` picks the first for callers without fallback.
Names are checked against the configuration only, so client input never creates new state: the
memo holds successfully resolved names and is bounded.

Every name a client sends must match the grammar (``llmgw.schemas.MODEL_NAME_PATTERN``) before it
is resolved; that check runs on memo misses only, so a name seen before costs nothing. The version is the part after the last
``:`` when that part holds no ``/`` (so ``gpt://folder/model/latest`` is one model name, not
``gpt`` plus a version); a resolved model longer than ``MODEL_MAX`` or version longer than
``VERSION_MAX`` (the usage columns) is ``InvalidModelName`` (400), checked once per distinct name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from llmgw.config import AliasTarget, ProviderConfig, Settings
from llmgw.errors import InvalidModelName, ModelNotFound
from llmgw.schemas import MODEL_MAX, MODEL_NAME_PATTERN, VERSION_MAX
from llmgw.usage.pricing import cost_of

__all__ = ["Resolver", "Target"]

_MEMO_MAX = 4096
_NAME = re.compile(MODEL_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete place to send a request."""

    provider: str
    model: str
    """The provider-side model name (no ``provider/`` prefix, no ``:version``)."""
    version: str | None = None
    alias: str | None = None
    """The alias the client used, when it used one."""
    weight: float = 1.0
    qualified: str = field(init=False, repr=False, compare=False)
    """``provider/model[:version]`` (made once: it names the target in every answer's header,
    usage record and attempt list)."""

    def __post_init__(self) -> None:
        v = f":{self.version}" if self.version else ""
        object.__setattr__(self, "qualified", f"{self.provider}/{self.model}{v}")


class Resolver:
    """Resolve client model names against the configured providers and aliases."""

    def __init__(self, settings: Settings) -> None:
        self._providers: dict[str, ProviderConfig] = {p.name: p for p in settings.providers}
        self._models: dict[str, frozenset[str]] = {
            p.name: frozenset(p.models) for p in settings.providers
        }
        owners: dict[str, list[str]] = {}
        for p in settings.providers:
            for m in p.models:
                owners.setdefault(m, []).append(p.name)
        self._owners = owners
        self._aliases: dict[str, tuple[str | AliasTarget, ...]] = {
            k: tuple(v) for k, v in settings.aliases.items()
        }
        self._memo: dict[str, tuple[Target, ...]] = {}
        self._costs: dict[tuple[str, str | None, str | None, int, int], Decimal] = {}

    @property
    def aliases(self) -> list[str]:
        """Configured alias names."""
        return list(self._aliases)

    def model_ids(self) -> list[str]:
        """Every configured ``provider/model`` id (providers with an empty list offer none here)."""
        return [f"{p}/{m}" for p, models in self._models.items() for m in sorted(models)]

    def provider_config(self, name: str) -> ProviderConfig | None:
        """The configuration of provider ``name``."""
        return self._providers.get(name)

    def cost(
        self,
        provider: str,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        version: str | None = None,
    ) -> Decimal:
        """``cost_of`` with ``provider``'s prices (configured, else bundled), memoised: the
        same token counts recur, and the Decimal arithmetic costs ~1 µs a request (the memo is
        bounded; Decimals are immutable, so sharing them is safe)."""
        key = (provider, model, version, prompt_tokens, completion_tokens)
        cost = self._costs.get(key)
        if cost is None:
            cost = cost_of(
                self._providers.get(provider), model, prompt_tokens, completion_tokens, version
            )
            if len(self._costs) >= _MEMO_MAX:
                self._costs.clear()
            self._costs[key] = cost
        return cost

    def resolve(self, name: str) -> Target:
        """The first candidate for ``name``; ``ModelNotFound`` (404) when there is none."""
        return self.candidates(name)[0]

    def candidates(self, name: str) -> tuple[Target, ...]:
        """Every candidate for ``name``, in order; ``ModelNotFound`` (404) when there is none."""
        hit = self._memo.get(name)
        if hit is not None:
            return hit
        if _NAME.fullmatch(name) is None:  # fullmatch: "$" would let a final "\n" through
            raise InvalidModelName()
        found = self._alias_targets(name) if name in self._aliases else (self._direct(name),)
        for t in found:
            if len(t.model) > MODEL_MAX or (t.version is not None and len(t.version) > VERSION_MAX):
                raise InvalidModelName()
        if len(self._memo) < _MEMO_MAX:
            self._memo[name] = found
        return found

    def _alias_targets(self, alias: str) -> tuple[Target, ...]:
        """The alias's targets that some provider offers now, in order: a target whose provider
        is gone (a stored provider disabled or removed, a typo) is left out, so the others
        still answer; when none is left, the first target's ``ModelNotFound``."""
        found: list[Target] = []
        first: ModelNotFound | None = None
        for c in self._aliases[alias]:
            try:
                found.append(self._alias_target(alias, c))
            except ModelNotFound as exc:
                first = first or exc
        if not found and first is not None:
            raise first
        return tuple(found)

    def direct(self, name: str) -> Target:
        """``name`` as an alias target: ``provider/model[:version]`` or an unambiguous bare
        model name, never an alias; ``ModelNotFound`` (404) when no provider offers it."""
        return self._direct(name)

    def _alias_target(self, alias: str, cand: str | AliasTarget) -> Target:
        target, weight = (cand, 1.0) if isinstance(cand, str) else (cand.target, cand.weight)
        t = self._direct(target)
        return Target(t.provider, t.model, t.version, alias=alias, weight=weight)

    def _direct(self, name: str) -> Target:
        provider, sep, rest = name.partition("/")
        if sep and provider in self._providers:
            t = self._in_provider(provider, rest)
            if t is not None:
                return t
            raise ModelNotFound(
                f"provider {provider!r} does not offer model {rest!r}",
                param="model",
                hint="GET /v1/models lists the configured models",
            )
        model, version = self._split(name)
        for candidate, ver in ((name, None), (model, version)):
            owners = self._owners.get(candidate)
            if owners is None:
                continue
            if len(owners) == 1:
                return Target(owners[0], candidate, ver)
            raise ModelNotFound(
                f"model {candidate!r} is offered by several providers ({', '.join(owners)}); "
                "name it as provider/model",
                param="model",
            )
        raise ModelNotFound(
            f"model {name!r} does not exist or is not configured",
            param="model",
            hint="GET /v1/models lists the configured models and aliases",
        )

    def _in_provider(self, provider: str, rest: str) -> Target | None:
        if not rest:
            return None
        models = self._models[provider]
        if not models:  # the provider's own list is authoritative: pass the name through
            model, version = self._split(rest)
            return Target(provider, model, version)
        if rest in models:  # e.g. Ollama's "llama3:8b" is a model name, not a version
            return Target(provider, rest)
        model, version = self._split(rest)
        if version is not None and model in models:
            return Target(provider, model, version)
        return None

    @staticmethod
    def _split(name: str) -> tuple[str, str | None]:
        model, sep, version = name.rpartition(":")
        if sep and model and version and "/" not in version:
            return model, version
        return name, None
