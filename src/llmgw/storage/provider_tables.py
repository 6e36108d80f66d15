"""Providers and aliases managed at runtime (issue 16, part 2). Migrations ``0016_providers``
and ``0017_aliases`` create them.

One row per provider added through the admin API or ``llmgw providers add``: the
``[[providers]]`` fields as JSON (``config``, never a credential), the credential sealed with
AES-GCM (``secret``, ``llmgw.providers.sealed``), and ``enabled``. ``revision`` grows on every
change, so running gateways notice a change by one small query (``llmgw.providers.managed``).
One row per alias added through the admin API or ``llmgw providers aliases add``: its ordered
targets as the config file's ``[aliases]`` holds them (``llmgw.providers.stored_aliases``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from llmgw.storage.types import JSONType, UTCDateTime

__all__ = ["AliasRow", "ProviderRow"]


class ProviderRow(SQLModel, table=True):
    """One runtime-managed provider."""

    __tablename__ = "providers"

    name: str = Field(primary_key=True, max_length=63)
    kind: str = Field(max_length=32, nullable=False)
    config: dict[str, Any] = Field(sa_type=JSONType, nullable=False)
    """The other ``ProviderConfig`` fields (base_url, models, timeouts...); no credential."""
    secret: str | None = Field(default=None, sa_type=sa.Text())
    """The credential, sealed (``aesgcm1:`` + base64); never returned, never logged."""
    enabled: bool = Field(default=True, nullable=False)
    revision: int = Field(default=1, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)


class AliasRow(SQLModel, table=True):
    """One runtime-managed alias."""

    __tablename__ = "aliases"

    name: str = Field(primary_key=True, max_length=128)
    targets: list[Any] = Field(sa_type=JSONType, nullable=False)
    """Ordered candidates: ``"provider/model[:version]"`` or ``{"target": ..., "weight": w}``."""
    revision: int = Field(default=1, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime(), nullable=False)
