"""The last line of defence for secrets in error answers: every envelope leaving the server.

Adapters already keep upstream bodies, URLs and credentials out of their error messages
(``providers/transport.py:redact``). A ``Scrubber`` cleans the final envelope once more, on the
error path only: the running providers' credentials (each ``Gateway`` owns one scrubber and gives
it its providers' secrets at start-up) are replaced by ``[redacted]`` in the message and ``param``
of every error answer and final SSE error event, and for upstream errors bearer tokens and
key-shaped strings are redacted too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmgw.errors import LlmgwError, UpstreamError
from llmgw.providers.transport import redact

__all__ = ["MIN_SECRET_LENGTH", "Scrubber"]

MIN_SECRET_LENGTH = 8  # shorter strings would redact ordinary words


class Scrubber:
    """Removes known credentials (and, for upstream errors, token-shaped strings) from envelopes."""

    __slots__ = ("secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also scrub ``secrets`` (strings shorter than ``MIN_SECRET_LENGTH`` are ignored)."""
        new = [s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH and s not in self.secrets]
        self.secrets = (*self.secrets, *new)

    def clear(self) -> None:
        """Forget every secret (a stopped gateway)."""
        self.secrets = ()

    def text(self, text: str, *, upstream: bool) -> str:
        """``text`` with the secrets replaced; bearer tokens and keys too when ``upstream``."""
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "[redacted]")
        if upstream:
            text = redact(text, limit=2000)
        return text

    def envelope(self, err: LlmgwError, *, hint: bool = False) -> dict[str, Any]:
        """``err``'s OpenAI envelope with secrets removed from its message and param; with
        ``hint`` (the admin API's answers) also the error's ``hint`` when it has one, the line
        the CLI prints under the message, so a remote command shows the hint a local one does."""
        body = err.to_openai()
        fields: Any = body["error"]
        if hint and err.hint:
            fields["hint"] = err.hint
        upstream = isinstance(err, UpstreamError)
        for field in ("message", "param", "hint"):
            value = fields.get(field)
            if isinstance(value, str) and value:
                fields[field] = self.text(value, upstream=upstream)
        return body
