"""The configuration's layers read without pydantic: where the file is, its TOML, the ``LLMGW_*``
environment, and how layers merge. ``llmgw.config`` builds ``Settings`` from these; the CLI's
fast path (``llmgw.cli.fast``) uses them alone, and only when the layers set nothing that needs
validating (``plain_database_url``), so both give the same values (tests/unit/test_config_layers.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmgw.errors import ConfigError

__all__ = [
    "ALERTS_MODE",
    "DATABASE_DEFAULTS",
    "ENV_PREFIX",
    "SETTINGS_FIELDS",
    "config_path",
    "default_home",
    "env_layer",
    "merge",
    "plain_database_url",
    "read_toml",
]

ENV_PREFIX = "LLMGW_"
# Environment variables that are not settings fields but steer where settings come from.
META_ENV = frozenset({"LLMGW_HOME", "LLMGW_CONFIG"})
# Short spellings accepted for often-set nested values.
ENV_ALIASES = {"LLMGW_DATABASE_URL": ("database", "url")}
SETTINGS_FIELDS = frozenset(
    {
        "home",
        "log_level",
        "redis_url",
        "database",
        "server",
        "log",
        "auth",
        "identity",
        "usage",
        "routing",
        "ratelimit",
        "alerts",
        "notify",
        "budgets",
        "reports",
        "tui",
        "backup",
        "providers",
        "aliases",
    }
)
"""``Settings``' top-level fields (a test keeps the two equal): other ``LLMGW_*`` are not ours."""
DATABASE_DEFAULTS: dict[str, Any] = {
    "pool_size": 10,
    "connect_timeout": 5.0,
    "dead_connection_timeout": 30.0,
}
"""``Settings().database``'s pool size and timeouts (a test keeps them equal), for the fast paths
that open the database of a plain configuration."""
ALERTS_MODE = "enriched"
"""``Settings().alerts.mode`` (a test keeps them equal)."""


def default_home() -> Path:
    """``$LLMGW_HOME``, else the platform's user data directory for llmgw."""
    env = os.environ.get("LLMGW_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("llmgw"))


def config_path(explicit: Path | None, env: Mapping[str, str]) -> tuple[Path | None, bool]:
    """The config file to read and whether the user named it (then it must exist)."""
    if explicit is not None:
        return explicit, True
    if env.get("LLMGW_CONFIG"):
        return Path(env["LLMGW_CONFIG"]).expanduser(), True
    home = Path(env["LLMGW_HOME"]).expanduser() if env.get("LLMGW_HOME") else default_home()
    return home / "config.toml", False


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The file's table and its text; ``ConfigError`` when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror}",
            hint="check the path given by --config or LLMGW_CONFIG",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", hint="save the file as UTF-8") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid TOML: {exc}", hint="see `llmgw config init` for a valid example"
        ) from None


def env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """``LLMGW_*`` variables as a nested dict; values that look like JSON are parsed."""
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in META_ENV:
            continue
        path: tuple[str, ...]
        if key in ENV_ALIASES:
            path = ENV_ALIASES[key]
        else:
            path = tuple(p.lower() for p in key[len(ENV_PREFIX) :].split("__"))
        if path[0] not in SETTINGS_FIELDS:
            continue  # not ours: other tools may use the prefix too
        value: Any = raw
        if raw[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, tables merged key by key (``aliases`` replaced whole)."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k != "aliases":
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def plain_database_url(config_file: Path | None, env: Mapping[str, str]) -> str | None:
    """``load_settings(config_file).settings.database_url`` when the file and environment set
    nothing but ``home`` and ``database.url`` as plain strings (so every other setting is its
    default and nothing can fail validation); ``None`` in every other case, including a file
    that cannot be read: then only ``load_settings`` gives the right answer or error."""
    try:
        path, must_exist = config_path(config_file, env)
        file_layer: dict[str, Any] = {}
        if path is not None and (must_exist or path.exists()):
            file_layer, _ = read_toml(path)
    except (ConfigError, OSError, ValueError):
        return None
    home_layer = {"home": env["LLMGW_HOME"]} if env.get("LLMGW_HOME") else {}
    merged = merge(merge({}, file_layer), merge(home_layer, env_layer(env)))
    if not set(merged) <= {"home", "database"}:
        return None
    home, database = merged.get("home"), merged.get("database", {})
    if "home" in merged and not (isinstance(home, str) and home):
        return None
    if not isinstance(database, dict) or not set(database) <= {"url"}:
        return None
    url = database.get("url")
    if url is not None:
        return url if isinstance(url, str) else None
    base = Path(home) if isinstance(home, str) else default_home()
    return f"sqlite:///{base / 'llmgw.db'}"
