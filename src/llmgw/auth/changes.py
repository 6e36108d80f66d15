"""A change to keys or users that cached copies must learn of, and its wire format on Redis.

Kept apart from ``llmgw.auth.broadcast`` so the services (and every CLI command) can name a
change without loading asyncio or redis-py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["AuthChange", "channel_of", "decode", "encode", "version_key_of"]


@dataclass(frozen=True, slots=True)
class AuthChange:
    """Keys and users whose cached state is stale; ``forget_refusals`` after a user is enabled."""

    keys: tuple[uuid.UUID, ...] = ()
    users: tuple[uuid.UUID, ...] = ()
    forget_refusals: bool = False


def channel_of(prefix: str) -> str:
    """The pub/sub channel for ``prefix``."""
    return f"{prefix}:changes"


def version_key_of(prefix: str) -> str:
    """The version counter's key for ``prefix``."""
    return f"{prefix}:version"


def encode(change: AuthChange) -> str:
    """The JSON part of a message (ids only: no names, prefixes or secrets)."""
    body: dict[str, Any] = {"k": [str(k) for k in change.keys], "u": [str(u) for u in change.users]}
    if change.forget_refusals:
        body["r"] = 1
    return json.dumps(body, separators=(",", ":"))


def decode(data: bytes | str) -> tuple[int, AuthChange]:
    """``(version, change)`` from a message; ``ValueError`` when it is not one."""
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
        head, _, body = text.partition(" ")
        version = int(head)
        raw = json.loads(body)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        keys = tuple(uuid.UUID(k) for k in raw.get("k", ()))
        users = tuple(uuid.UUID(u) for u in raw.get("u", ()))
    except (TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a change message: {type(exc).__name__}") from None
    return version, AuthChange(keys, users, bool(raw.get("r")))
