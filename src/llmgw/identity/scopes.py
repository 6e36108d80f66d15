"""Scopes a token may carry: ``chat`` (the OpenAI routes), ``keys:self``, ``usage:self``, ``admin``."""

from __future__ import annotations

from collections.abc import Iterable

from llmgw.identity.errors import InvalidScope

__all__ = ["SCOPES", "format_scope", "grantable", "parse_scope"]

SCOPES: tuple[str, ...] = ("chat", "keys:self", "usage:self", "admin")
_KNOWN = frozenset(SCOPES)


def parse_scope(value: str | None) -> frozenset[str]:
    """The scopes in a space-separated ``scope`` string (RFC 6749 §3.3).

    ``InvalidScope`` (an ``InvalidRequest``, error ``invalid_scope``) names an unknown one.
    An empty or missing string is the empty set: callers decide what a default means.
    """
    if not value:
        return frozenset()
    parts = value.split(" ")
    unknown = [p for p in parts if p not in _KNOWN]
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "…"
        raise InvalidScope(
            f"unknown scope {shown!r}",
            hint=f"scopes are: {' '.join(SCOPES)}",
            param="scope",
        )
    return frozenset(parts)


def format_scope(scopes: Iterable[str]) -> str:
    """Scopes as the canonical space-separated string, in ``SCOPES`` order."""
    have = set(scopes)
    return " ".join(s for s in SCOPES if s in have)


def grantable(
    requested: frozenset[str], client_scopes: Iterable[str], role: str | None
) -> frozenset[str]:
    """What may be granted of ``requested``: within the client's registered scopes, and
    ``admin`` only to a user whose role is admin (``role=None``: a client acting for itself).
    An empty request means everything the client and the user may have."""
    allowed = frozenset(client_scopes)
    if role != "admin":
        allowed -= {"admin"}
    return (requested or allowed) & allowed
