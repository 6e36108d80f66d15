"""The config file's providers and aliases merged with the stored ones, cheaply.

``merged_settings`` is the one rule (the config file wins a name clash) that running gateways
(``llmgw.server.reload``) and the admin operations share; ``effective_settings`` reads the
``providers`` and ``aliases`` tables with two plain queries (no credential, no SQLModel table
classes, no ``cryptography``), so ``llmgw usage stats`` and ``providers prices`` stay quick.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from llmgw.config import AliasTarget, ProviderConfig, Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["alias_targets", "effective_settings", "merged_settings"]

log = logging.getLogger("llmgw.providers")


def alias_targets(rows: Iterable[tuple[str, list[Any]]]) -> dict[str, list[str | AliasTarget]]:
    """Stored aliases ``(name, targets)`` in the shape of ``Settings.aliases``; a row that is no
    longer valid (an infinite weight stored before weights had to be finite) is skipped with a
    warning instead of failing every stored provider and alias."""
    out: dict[str, list[str | AliasTarget]] = {}
    for name, targets in rows:
        try:
            out[name] = [
                t if isinstance(t, str) else AliasTarget.model_validate(t) for t in targets
            ]
        except ValidationError as exc:
            first = exc.errors()[0]
            log.warning(
                "stored alias %r is ignored: %s (fix it with llmgw providers aliases edit)",
                name,
                first["msg"],
            )
    return out


def merged_settings(
    settings: Settings,
    stored: list[tuple[ProviderConfig, str | None]],
    aliases: Mapping[str, list[str | AliasTarget]] | None = None,
) -> tuple[Settings, dict[str, str | None], list[str]]:
    """``settings`` with the stored providers and ``aliases`` appended (the config file wins a
    name clash), the stored credentials by name, and one warning per shadowed row."""
    names = {p.name for p in settings.providers}
    extra: list[ProviderConfig] = []
    creds: dict[str, str | None] = {}
    warnings: list[str] = []
    for cfg, secret in stored:
        if cfg.name in names:
            warnings.append(
                f"stored provider {cfg.name!r} is ignored: the config file defines a provider of "
                "that name, and config-file providers win"
            )
            continue
        extra.append(cfg)
        creds[cfg.name] = secret
    more_aliases: dict[str, list[str | AliasTarget]] = {}
    for name, targets in (aliases or {}).items():
        if name in settings.aliases:
            warnings.append(
                f"stored alias {name!r} is ignored: the config file defines an alias of that "
                "name, and config-file aliases win"
            )
            continue
        more_aliases[name] = targets
    merged = settings.model_copy(
        update={
            "providers": [*settings.providers, *extra],
            "aliases": {**settings.aliases, **more_aliases},
        }
    )
    return merged, creds, warnings


def effective_settings(settings: Settings, engine: Engine) -> Settings:
    """``settings`` with the enabled stored providers (no credential) and the stored aliases,
    as a running gateway has them: what the CLI without ``--url`` prices and counts."""
    import sqlalchemy as sa

    from llmgw.storage.types import JSONType

    providers = sa.table("providers", sa.column("name", sa.String()),
                         sa.column("kind", sa.String()), sa.column("config", JSONType),
                         sa.column("enabled", sa.Boolean()))  # fmt: skip
    aliases = sa.table("aliases", sa.column("name", sa.String()), sa.column("targets", JSONType))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(providers).where(providers.c.enabled.is_(True)).order_by(providers.c.name)
        ).all()
        named = conn.execute(sa.select(aliases).order_by(aliases.c.name)).all()
    stored: list[tuple[ProviderConfig, str | None]] = [
        (ProviderConfig.model_validate({**r.config, "name": r.name, "kind": r.kind}), None)
        for r in rows
    ]
    more = alias_targets((r.name, r.targets) for r in named)
    return merged_settings(settings, stored, more)[0]
