"""The ``--set FIELD=VALUE`` and ``--unset FIELD`` options of ``llmgw providers add|edit``.

Any ``[[providers]]`` field a stored provider may hold can be given (``llmgw.providers.managed``
refuses ``name``, ``kind`` and the fields that make the server read its own files or
environment); a value is read as JSON when it parses (``120``, ``true``, ``["a","b"]``,
``{"gpt-4o": {"input": 2.5, "output": 10}}``), else as a plain string. ``--unset`` sends
``null``, which removes the field so its default applies again.
"""

from __future__ import annotations

import json
from typing import Any

from llmgw.errors import UsageError

__all__ = ["SETTABLE", "field_changes"]

_FIXED = {"name", "kind", "api_key_env", "ca_bundle", "service_account_key_file"}


def _settable() -> list[str]:
    from llmgw.config import ProviderConfig

    return [f for f in ProviderConfig.model_fields if f not in _FIXED]


SETTABLE = _settable()
"""The ``[[providers]]`` fields a stored provider may set or unset."""


def _field(name: str, option: str) -> str:
    name = name.strip().replace("-", "_")
    if name not in SETTABLE:
        why = (
            "cannot change on a stored provider (remove and add again)"
            if name in ("name", "kind")
            else "cannot be set on a stored provider"
            if name in _FIXED
            else "is not a provider field"
        )
        raise UsageError(
            f"{option} {name!r}: {why}", hint=f"fields: {', '.join(SETTABLE)}", param=option
        )
    return name


def field_changes(
    given: dict[str, Any], sets: list[str] | None, unsets: list[str] | None
) -> dict[str, Any]:
    """``given`` (the dedicated options' values, ``None`` when not given) plus ``--set`` and
    ``--unset``, as the fields to send: only what was given, ``None`` for an unset one."""
    out = {k: v for k, v in given.items() if v is not None}
    for item in sets or []:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: use FIELD=VALUE", hint="e.g. --set idle_timeout=60")
        name = _field(name, "--set")
        if name in out:
            raise UsageError(f"{name} is given twice", hint="give each field once")
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    for name in unsets or []:
        name = _field(name, "--unset")
        if name in out:
            raise UsageError(f"{name} is both set and unset", hint="give one or the other")
        out[name] = None
    return out
