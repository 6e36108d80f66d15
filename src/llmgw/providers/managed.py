"""Providers managed at runtime: stored in the ``providers`` table, credentials sealed.

``ProviderStore`` adds, edits, disables, enables and removes rows; each change raises the row's
``revision`` (a removed row disappears), so ``fingerprint`` (one small query: every
``(name, revision)``) tells a running gateway that something changed (``llmgw.server.reload``).
Credentials are sealed with AES-GCM under a key derived (HKDF-SHA256, its own ``info``) from the
same secret that seals the OAuth signing keys: ``[identity] signing_secret``, else
``$LLMGW_HOME/identity.key``; several instances must share it. A sealed credential is never
returned: records say only ``"has_secret": true``.

Config-file providers (``[[providers]]``) are read-only and win on a name clash: adding a name
the file already has is refused (409), and a stored row shadowed by a file entry is skipped with
a warning by ``merged_settings``.
"""

from __future__ import annotations

import base64
import builtins
import logging
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from llmgw.config import ProviderConfig, Settings
from llmgw.errors import ConfigError, Conflict, InvalidRequest, NotFound
from llmgw.providers.registry import SecretResolver
from llmgw.providers.stored_view import effective_settings, merged_settings
from llmgw.storage.provider_tables import ProviderRow
from llmgw.storage.tables import utcnow

__all__ = [
    "ManagedProvider",
    "ProviderStore",
    "Sealer",
    "effective_settings",
    "merged_settings",
    "sealer_for",
]

log = logging.getLogger("llmgw.providers")
_T: sa.Table = ProviderRow.__table__  # type: ignore[attr-defined]
_FORMAT = "aesgcm1:"
_FORBIDDEN = {"name", "kind", "api_key_env", "ca_bundle", "service_account_key_file"}
"""Fields the API does not set: the name and kind are fixed (remove and add again), and the
others read files or the environment of the server, which an API caller must not choose."""


class Sealer:
    """Seals and opens provider credentials (AES-GCM, random 96-bit nonce)."""

    def __init__(self, secret: bytes) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"llmgw providers v1")
        self._aead = AESGCM(hkdf.derive(secret))

    def seal(self, plain: str, name: str) -> str:
        nonce = _random.token_bytes(12)
        box = self._aead.encrypt(nonce, plain.encode("utf-8"), name.encode("utf-8"))
        return _FORMAT + base64.urlsafe_b64encode(nonce + box).decode("ascii")

    def open(self, sealed: str, name: str) -> str:
        if not sealed.startswith(_FORMAT):
            raise ConfigError(f"provider {name!r}: the stored credential has an unknown format")
        raw = base64.urlsafe_b64decode(sealed[len(_FORMAT) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], name.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise ConfigError(
                f"provider {name!r}: the stored credential cannot be opened with this key",
                hint="every instance needs the same [identity] signing_secret",
            ) from None


def sealer_for(settings: Settings) -> Sealer:
    """The sealer of ``settings`` (its signing secret, else ``$LLMGW_HOME/identity.key``)."""
    from llmgw.identity.signing import load_secret

    configured = settings.identity.signing_secret
    value = configured.get_secret_value() if configured is not None else None
    return Sealer(load_secret(value, settings.home))


@dataclass(frozen=True, slots=True)
class ManagedProvider:
    """One stored provider as the API shows it (never the credential)."""

    name: str
    kind: str
    config: dict[str, Any]
    enabled: bool
    revision: int
    has_secret: bool
    created_at: Any
    updated_at: Any

    def record(self, *, shadowed: bool = False) -> dict[str, Any]:
        """The JSON-ready record (``/admin/v1/providers/managed``, ``--json``); a password in a
        URL (``base_url``, ``auth_url``, ``iam_url``) shows as ``***``, as ``providers list``
        shows the config file's."""
        from llmgw.storage.db import mask_url

        return {
            "name": self.name,
            "kind": self.kind,
            "source": "database",
            "enabled": self.enabled,
            "shadowed_by_config": shadowed,
            "has_secret": self.has_secret,
            "revision": self.revision,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "updated_at": self.updated_at.isoformat().replace("+00:00", "Z"),
            **{
                k: mask_url(v) if isinstance(v, str) else v
                for k, v in self.config.items()
                if k not in ("name", "kind")
            },
        }


def _validated(name: str, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` checked as a ``ProviderConfig``; the stored JSON (set fields only)."""
    bad = sorted(set(fields) & _FORBIDDEN)
    if bad:
        raise InvalidRequest(
            f"{', '.join(bad)} cannot be set on a stored provider",
            hint="give the credential as `api_key`; to rename or change the kind, remove and add",
        )
    try:
        cfg = ProviderConfig.model_validate({**fields, "name": name, "kind": kind})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "provider"
        raise InvalidRequest(f"{where}: {first['msg']}", param=where) from None
    return cfg.model_dump(mode="json", exclude_unset=True, exclude={"name", "kind"})


def _row(r: Any) -> ManagedProvider:
    return ManagedProvider(
        r.name, r.kind, dict(r.config), bool(r.enabled), r.revision, r.secret is not None,
        r.created_at, r.updated_at,
    )  # fmt: skip


class ProviderStore:
    """The ``providers`` table. ``engine`` may be a transaction's ``Bound`` engine."""

    def __init__(self, engine: Engine, sealer: Sealer | None = None) -> None:
        self._engine = engine
        self._sealer = sealer

    def _seal(self, secret: str, name: str) -> str:
        if self._sealer is None:
            raise ConfigError("storing a provider credential needs the sealing key")
        return self._sealer.seal(secret, name)

    def list(self) -> list[ManagedProvider]:
        with self._engine.connect() as conn:
            return [_row(r) for r in conn.execute(sa.select(_T).order_by(_T.c.name))]

    def get(self, name: str) -> ManagedProvider:
        with self._engine.connect() as conn:
            r = conn.execute(sa.select(_T).where(_T.c.name == name)).first()
        if r is None:
            raise NotFound(
                f"no stored provider {name!r}",
                hint="`llmgw providers list` shows them (config-file providers are read-only)",
            )
        return _row(r)

    def add(self, name: str, kind: str, fields: Mapping[str, Any], secret: str | None) -> None:
        config = _validated(name, kind, fields)
        now = utcnow()
        values = {"name": name, "kind": kind, "config": config, "enabled": True, "revision": 1}
        values |= {"created_at": now, "updated_at": now}
        values["secret"] = self._seal(secret, name) if secret else None
        with self._engine.connect() as conn:
            taken = conn.execute(sa.select(_T.c.name).where(_T.c.name == name)).first()
        if taken is not None:
            raise Conflict(
                f"a stored provider named {name!r} exists",
                hint=f"change it with `llmgw providers edit {name}`",
            )
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.insert(_T).values(**values))
        except IntegrityError:
            raise Conflict(
                f"a stored provider named {name!r} exists",
                hint=f"change it with `llmgw providers edit {name}`",
            ) from None

    def edit(self, name: str, fields: Mapping[str, Any], secret: str | None) -> None:
        """Merge ``fields`` into the stored ones (a ``None`` value unsets the field)."""
        old = self.get(name)
        merged = {k: v for k, v in {**old.config, **fields}.items() if v is not None}
        config = _validated(name, old.kind, merged)
        values: dict[str, Any] = {"config": config}
        if secret is not None:
            values["secret"] = self._seal(secret, name) if secret else None
        self._update(name, values)

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable; ``False`` when it already was."""
        if self.get(name).enabled == enabled:
            return False
        self._update(name, {"enabled": enabled})
        return True

    def _update(self, name: str, values: dict[str, Any]) -> None:
        values = {**values, "revision": _T.c.revision + 1, "updated_at": utcnow()}
        with self._engine.begin() as conn:
            conn.execute(sa.update(_T).where(_T.c.name == name).values(**values))

    def remove(self, name: str) -> ManagedProvider:
        old = self.get(name)
        with self._engine.begin() as conn:
            conn.execute(sa.delete(_T).where(_T.c.name == name))
        return old

    def fingerprint(self) -> tuple[tuple[str, int, str], ...]:
        """Every ``(name, revision, updated_at)``: changes whenever a row is added, changed or
        removed (``updated_at`` tells a removed and re-added provider, at revision 1 again,
        from the old one)."""
        q = sa.select(_T.c.name, _T.c.revision, _T.c.updated_at).order_by(_T.c.name)
        with self._engine.connect() as conn:
            return tuple((r.name, r.revision, r.updated_at.isoformat()) for r in conn.execute(q))

    def enabled_configs(self) -> builtins.list[tuple[ProviderConfig, str | None]]:
        """Every enabled row as a ``ProviderConfig`` with its opened credential."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_T).where(_T.c.enabled.is_(True)).order_by(_T.c.name))
            out = []
            for r in rows.all():
                cfg = ProviderConfig.model_validate({**r.config, "name": r.name, "kind": r.kind})
                secret = None
                if r.secret is not None and self._sealer is not None:
                    secret = self._sealer.open(r.secret, r.name)
                out.append((cfg, secret))
            return out


class StoredSecrets(SecretResolver):
    """A resolver that answers stored credentials first, then the usual env/keyring lookup."""

    def __init__(self, stored: Mapping[str, str | None], **resolver: Any) -> None:
        super().__init__(**resolver)
        self._stored = stored

    def get(self, config: ProviderConfig) -> str | None:
        if config.name in self._stored:
            return self._stored[config.name]
        return super().get(config)
