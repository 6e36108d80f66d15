"""The Chat screen's generation settings: one parser per setting ``POST /api/chat`` takes, the
form that edits them, and the one-line summary under the pickers.

A setting left empty is not sent, so the conversation keeps what it had (the server keeps each
setting a turn gave for the next turns) or the model's default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from llmgw.tui.widgets.dialogs import Field

__all__ = ["fields", "parse_float", "parse_int", "summary_line", "to_text"]

Parser = Callable[[str], Any]


def parse_float(name: str, lo: float, hi: float) -> Parser:
    """Empty (not sent) or a number from ``lo`` to ``hi``."""

    def parse(text: str) -> float | None:
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a number") from None
        if not lo <= value <= hi:
            raise ValueError(f"{name} goes from {lo:g} to {hi:g}")
        return value

    return parse


def parse_int(name: str, lo: int | None = 1) -> Parser:
    """Empty (not sent) or a whole number of at least ``lo``."""

    def parse(text: str) -> int | None:
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} {text!r} is not a whole number") from None
        if lo is not None and value < lo:
            raise ValueError(f"{name} is at least {lo} (leave it empty for none)")
        return value

    return parse


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"{what} is not valid JSON") from None


def parse_stop(text: str) -> str | list[str] | None:
    """Empty, one stop text, or a JSON list of up to 4."""
    if not text:
        return None
    if not text.startswith("["):
        return text
    value = _json(text, "stop")
    if not (
        isinstance(value, list) and 1 <= len(value) <= 4 and all(isinstance(v, str) for v in value)
    ):
        raise ValueError('a JSON list of 1 to 4 texts, e.g. ["END", "\\n\\n"]')
    return value


def parse_choice(*choices: str) -> Parser:
    """Empty or one of ``choices``."""

    def parse(text: str) -> str | None:
        if not text:
            return None
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)} (or empty)")
        return text

    return parse


def parse_response_format(text: str) -> dict[str, Any] | None:
    """Empty, ``text``, ``json_object`` or a JSON object (a ``json_schema`` format)."""
    if not text:
        return None
    if text in ("text", "json_object"):
        return {"type": text}
    value = _json(text, "response_format")
    if not isinstance(value, dict) or "type" not in value:
        raise ValueError('text, json_object, or a JSON object with "type"')
    return value


def parse_tools(text: str) -> list[dict[str, Any]] | None:
    """Empty or a JSON list of tools (``{"type": "function", "function": {...}}``)."""
    if not text:
        return None
    value = _json(text, "tools")
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ValueError("a JSON list of tool objects")
    return value


def parse_tool_choice(text: str) -> str | dict[str, Any] | None:
    """Empty, ``auto``, ``none``, ``required`` or a JSON object naming a function."""
    if not text:
        return None
    if text in ("auto", "none", "required"):
        return text
    value = _json(text, "tool_choice")
    if not isinstance(value, dict):
        raise ValueError("auto, none, required, or a JSON object")
    return value


def parse_bool(text: str) -> bool | None:
    """Empty, yes/true or no/false."""
    if not text:
        return None
    low = text.lower()
    if low in ("yes", "true", "y", "1"):
        return True
    if low in ("no", "false", "n", "0"):
        return False
    raise ValueError("yes or no (or empty)")


def _text(value: str) -> str | None:
    return value or None


SPECS: tuple[tuple[str, str, str, Parser], ...] = (
    ("system", "system prompt", "none", _text),
    ("temperature", "temperature (0-2)", "model default", parse_float("temperature", 0, 2)),
    ("top_p", "top_p (0-1)", "model default", parse_float("top_p", 0, 1)),
    ("max_tokens", "max_tokens", "no limit", parse_int("max_tokens")),
    ("max_completion_tokens", "max_completion_tokens", "no limit",
     parse_int("max_completion_tokens")),
    ("stop", 'stop (a text, or a JSON list: ["END"])', "none", parse_stop),
    ("presence_penalty", "presence_penalty (-2 to 2)", "0",
     parse_float("presence_penalty", -2, 2)),
    ("frequency_penalty", "frequency_penalty (-2 to 2)", "0",
     parse_float("frequency_penalty", -2, 2)),
    ("seed", "seed", "random", parse_int("seed", None)),
    ("reasoning_effort", "reasoning_effort (low, medium, high)", "model default",
     parse_choice("minimal", "low", "medium", "high")),
    ("response_format", "response_format (text, json_object, or JSON)", "text",
     parse_response_format),
    ("tools", "tools (a JSON list)", "none", parse_tools),
    ("tool_choice", "tool_choice (auto, none, required, or JSON)", "auto", parse_tool_choice),
    ("parallel_tool_calls", "parallel_tool_calls (yes, no)", "model default", parse_bool),
)  # fmt: skip
"""(name, label, placeholder, parser): ``system`` and every setting of ``SETTING_NAMES``."""


def to_text(value: Any) -> str:
    """A setting's value as the form shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if (
        isinstance(value, dict)
        and set(value) == {"type"}
        and value["type"] in ("text", "json_object")
    ):
        return str(value["type"])
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fields(values: Mapping[str, Any]) -> list[Field]:
    """The form's fields, filled with ``values``."""
    return [
        Field(name, label, value=to_text(values.get(name)), placeholder=placeholder, parse=parse)
        for name, label, placeholder, parse in SPECS
    ]


def summary_line(values: Mapping[str, Any]) -> str:
    """What is set, on one line: ``system: You are terse. · temperature 0.2 · tools: 1``."""
    parts: list[str] = []
    system = values.get("system")
    if system:
        one = " ".join(str(system).split())
        parts.append(f"system: {one[:40]}{'…' if len(one) > 40 else ''}")
    for name, _label, _placeholder, _parse in SPECS[1:]:
        value = values.get(name)
        if value is None:
            continue
        if name == "tools":
            parts.append(f"tools: {len(value)}")
        else:
            parts.append(f"{name} {to_text(value)}")
    return " · ".join(parts) if parts else "default settings (ctrl+o to change)"
