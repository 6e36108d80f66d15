"""The last line of defence for secrets in error answers: every envelope leaving the server.

Adapters already keep upstream bodies, URLs and credentials out of their error messages
(``providers/transport.py:redact``). This scrubs the final envelope once more, on the error path
only: the configured providers' credentials (registered by each running ``Gateway``) are replaced
by ``[redacted]`` in the message and ``param`` of every error answer and final SSE error event,
and for upstream errors bearer tokens and key-shaped strings are redacted too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from llmgw.errors import UpstreamError
from llmgw.providers.transport import redact

__all__ = ["forget_secrets", "register_secrets", "scrub_envelope"]

MIN_SECRET_LENGTH = 8  # shorter strings would redact ordinary words
_secrets: Counter[str] = Counter()  # a multiset: several gateways in one process may share one


def register_secrets(secrets: Iterable[str]) -> list[str]:
    """Remember credentials to scrub; returns what was registered (pass it to ``forget_secrets``)."""
    added = [s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH]
    _secrets.update(added)
    return added


def forget_secrets(secrets: Iterable[str]) -> None:
    """Undo one ``register_secrets`` (a stopping gateway)."""
    _secrets.subtract(secrets)
    for s in [s for s, n in _secrets.items() if n <= 0]:
        del _secrets[s]


def _scrub(text: str, upstream: bool) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "[redacted]")
    if upstream:
        text = redact(text, limit=2000)
    return text


def scrub_envelope(body: dict[str, Any], exc: BaseException | None = None) -> dict[str, Any]:
    """``body`` (``{"error": {...}}``) with secrets removed from its message and param."""
    err = body.get("error")
    if not isinstance(err, dict):
        return body
    upstream = isinstance(exc, UpstreamError)
    for field in ("message", "param"):
        value = err.get(field)
        if isinstance(value, str) and value:
            err[field] = _scrub(value, upstream)
    return body
