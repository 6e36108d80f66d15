"""``llmgw config``: show, check and initialise the configuration."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr

from llmgw.cli.output import decimal_text, emit_json, print_table, stdout
from llmgw.cli.state import state
from llmgw.config import LoadedSettings, default_home
from llmgw.errors import ConfigError
from llmgw.storage.db import mask_url, redact_url

__all__ = ["config_app"]

config_app = typer.Typer(
    help="Show, check and create the configuration.", no_args_is_help=True, rich_markup_mode=None
)

EXAMPLE = """\
# llmgw configuration. Precedence: flags > LLMGW_* environment > this file > defaults.
# Nested settings can also come from the environment with "__": LLMGW_SERVER__PORT=9000.

# log_level = "info"
# redis_url = "redis://127.0.0.1:6379/0"   # shared rate limits and key cache for several instances

[database]
# Unset: SQLite at $LLMGW_HOME/llmgw.db. PostgreSQL: plain postgresql:// URLs are accepted.
# url = "postgresql://llmgw@127.0.0.1:5432/llmgw"      # or LLMGW_DATABASE_URL

[server]
host = "127.0.0.1"
port = 8080
# drain_seconds = 30       # on SIGTERM, time for in-flight requests and streams to finish
# key_cache_seconds = 2    # a revoked key stops working within this many seconds

[usage]
# batch_size = 500
# flush_interval = 0.2

# One table per upstream. Model names are provider/model[:version], e.g. local/gpt-4o-mini.
[[providers]]
name = "local"                         # unique, lowercase
kind = "openai"                        # openai | gigachat | yandexgpt
base_url = "http://127.0.0.1:9001/v1"  # `llmgw emulate openai --port 9001` serves this
api_key_env = "LOCAL_API_KEY"          # or store it: llmgw providers set-secret local
models = ["gpt-4o-mini"]

[aliases]
# An alias is an ordered list of candidates; later ones are fallbacks.
chat-default = ["local/gpt-4o-mini"]
"""


def _mask(path: tuple[str, ...], value: Any) -> Any:
    if isinstance(value, SecretStr):
        raw = value.get_secret_value()
        return redact_url(raw) if "://" in raw else "********"
    if isinstance(value, str):  # a plain URL setting (base_url) may carry user:password
        return mask_url(value)
    return value


def _flatten(obj: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(obj, BaseModel) and not isinstance(obj, SecretStr):
        out: list[tuple[tuple[str, ...], Any]] = []
        for name in type(obj).model_fields:
            out.extend(_flatten(getattr(obj, name), (*prefix, name)))
        return out
    if isinstance(obj, list) and obj and isinstance(obj[0], BaseModel):
        return [item for i, v in enumerate(obj) for item in _flatten(v, (*prefix, str(i)))]
    if isinstance(obj, dict) and obj and all(isinstance(v, BaseModel) for v in obj.values()):
        return [item for k, v in obj.items() for item in _flatten(v, (*prefix, str(k)))]
    return [(prefix, obj)]


# Provider settings that only one kind reads; `config show` leaves them out for the others.
_KIND_ONLY = {
    "auth_url": "gigachat",
    "scope": "gigachat",
    "folder_id": "yandexgpt",
    "allowed_folders": "yandexgpt",
    "service_account_key_file": "yandexgpt",
    "iam_url": "yandexgpt",
}


def _provider_source(loaded: LoadedSettings, path: tuple[str, ...]) -> str | None:
    """For ``providers.N.field``: ``None`` when the field does not apply to that provider's
    kind, ``default`` when the file did not set it, else where the provider list came from."""
    provider = loaded.settings.providers[int(path[1])]
    field = path[2]
    if _KIND_ONLY.get(field, provider.kind) != provider.kind:
        return None
    if field not in provider.model_fields_set:
        return "default"
    price_default = (  # providers.N.prices.MODEL.input left out of the file
        field == "prices"
        and len(path) == 5
        and path[4] not in provider.prices[path[3]].model_fields_set
    )
    if price_default:
        return "default"
    return str(loaded.source_of(path))


def _rows(loaded: LoadedSettings) -> list[dict[str, Any]]:
    rows = []
    for path, value in _flatten(loaded.settings):
        source: str | None = str(loaded.source_of(path))
        if path[0] == "providers" and len(path) >= 3:
            source = _provider_source(loaded, path)
            if source is None:
                continue
        value = _mask(path, value)
        if isinstance(value, Decimal):
            value = decimal_text(value)
        if isinstance(value, dict):
            value = {k: [getattr(t, "target", t) for t in v] for k, v in value.items()}
        rows.append(
            {
                "key": ".".join(path),
                "value": value
                if value is None or isinstance(value, bool | int | float | list | dict)
                else str(value),
                "source": source,
            }
        )
    return rows


@config_app.command("show")
def config_show(
    ctx: typer.Context,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Print every setting with its value and where it came from; secrets are masked."""
    loaded = state(ctx).loaded()
    rows = _rows(loaded)
    if json:
        emit_json(
            {
                "config_file": str(loaded.config_file) if loaded.config_file else None,
                "settings": rows,
            }
        )
        return
    stdout().print(f"config file: {loaded.config_file or '(none)'}")
    print_table(rows, ["key", "value", "source"], wrap=("value",))


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the configuration; exit 2 with file, line and key on the first error."""
    try:
        loaded = state(ctx).loaded()
    except ConfigError as exc:  # its hint says "run `llmgw config check`": this is it
        raise ConfigError(
            exc.message, hint="fix that line; `llmgw config init PATH` writes a commented example"
        ) from None
    s = loaded.settings
    for p in s.providers:  # what serve loads at start-up, checked the same way
        if p.ca_bundle is not None:
            from llmgw.providers.tls import ssl_context

            try:
                ssl_context(p.ca_bundle)
            except ConfigError as exc:
                raise ConfigError(
                    f"{loaded.config_file or 'config'}: providers.{p.name}.ca_bundle: {exc.message}",
                    hint=exc.hint,
                ) from None
    names = {p.name for p in s.providers}
    for alias, targets in s.aliases.items():
        for t in targets:
            target = getattr(t, "target", t)
            assert isinstance(target, str)
            provider = target.split("/", 1)[0]
            if "/" not in target or provider not in names:
                raise ConfigError(
                    f"{loaded.config_file or 'config'}: aliases.{alias}: unknown provider in {target!r}",
                    hint="alias targets are provider/model with a provider from [[providers]]",
                )
    where = loaded.config_file or "defaults and environment"
    typer.echo(f"ok: {where} ({len(s.providers)} providers, {len(s.aliases)} aliases)")


@config_app.command("init")
def config_init(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Where to write it (default: the file llmgw reads: --config, else "
            "$LLMGW_CONFIG, else $LLMGW_HOME/config.toml).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented example configuration file where llmgw will read it."""
    import os

    env_file = os.environ.get("LLMGW_CONFIG", "").strip()
    target = (
        path
        or state(ctx).config_file
        or (Path(env_file) if env_file else default_home() / "config.toml")
    )
    if target.is_dir():
        raise ConfigError(f"{target} is a directory", hint="give a file name: PATH/config.toml")
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="pass --force to overwrite it")
    tmp = target.with_suffix(target.suffix + ".tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(EXAMPLE, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or type(exc).__name__}",
            hint="choose a writable place: `llmgw config init PATH` (or set LLMGW_HOME)",
        ) from None
    typer.echo(f"wrote {target}")
