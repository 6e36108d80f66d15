"""What the native wire translations (GigaChat, YandexGPT) share: OpenAI's tool-call arguments.

OpenAI sends a tool call's ``arguments`` as a JSON string; GigaChat and YandexGPT both want a JSON
object and answer with one. ``tool_arguments`` reads the string for both, ``arguments_text``
writes their object back as OpenAI's string.
"""

from __future__ import annotations

import json
from typing import Any

from llmgw.errors import InvalidRequest

__all__ = ["arguments_text", "tool_arguments"]


def tool_arguments(raw: str, name: str) -> dict[str, Any]:
    """The JSON object in a tool call's ``arguments`` (``{}`` when blank).

    A JSON value that is not an object is wrapped as ``{"value": ...}`` (both upstreams take only
    objects); text that is not JSON is the client's error (400, ``param`` ``messages``).
    """
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequest(
            f"tool call {name!r}: arguments are not valid JSON", param="messages"
        ) from None
    return value if isinstance(value, dict) else {"value": value}


def arguments_text(value: Any) -> str:
    """A native tool call's ``arguments`` (an object, or already a string) as OpenAI's JSON string."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
