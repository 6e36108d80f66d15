"""``llmgw providers``: list configured upstreams, show their health, test one, store its secret."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated, Any

import typer

from llmgw.cli.output import confirm, emit_json, print_table, stdout, when_text
from llmgw.cli.state import state
from llmgw.config import ProviderConfig, Settings
from llmgw.errors import (
    ConfigError,
    NotFound,
    UsageError,
)
from llmgw.providers.probe import DEFAULT_BASE
from llmgw.storage.db import mask_url

__all__ = ["providers_app"]

providers_app = typer.Typer(
    help="Upstream providers: list, prices, models, health status, test, secrets; add, edit, disable, remove stored ones; aliases.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

KEYRING_SERVICE = "llmgw"


def _add_aliases() -> None:
    from llmgw.cli.provider_aliases import aliases_app

    providers_app.add_typer(aliases_app, name="aliases")


_add_aliases()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _provider(settings: Settings, name: str) -> ProviderConfig:
    cfg = settings.provider(name)
    if cfg is None:
        known = ", ".join(p.name for p in settings.providers) or "none configured"
        raise NotFound(f"no provider named {name!r} ({known})", hint="see `llmgw providers list`")
    return cfg


def _keyring_problem() -> str | None:
    """Why the OS keyring cannot be used here, or ``None`` when a real backend is active."""
    from llmgw.providers.registry import SecretResolver

    resolver = SecretResolver(warn=lambda _msg: None)
    resolver.from_keyring("-")  # loads the backend and probes it once; any failure becomes a notice
    return resolver.keyring_notice


def _credential(cfg: ProviderConfig) -> str:
    """Where the provider's credential would come from (never the value)."""
    from llmgw.providers.registry import SecretResolver

    resolver = SecretResolver(warn=lambda _msg: None)
    if resolver.from_env(cfg):
        return f"env {cfg.api_key_env}"
    if resolver.from_keyring(cfg.name):
        return "keyring"
    if cfg.service_account_key_file is not None:  # YandexGPT: IAM tokens from the key file
        return f"service account key {cfg.service_account_key_file}"
    missing = f"missing (set {cfg.api_key_env})" if cfg.api_key_env else "missing"
    return f"{missing}; keyring unavailable" if resolver.keyring_notice else missing


def _unpriced(cfg: ProviderConfig) -> list[str]:
    """The listed models with no price in force (neither configured nor bundled)."""
    from llmgw.usage.pricing import price_for

    return [m for m in cfg.models if price_for(cfg, m) is None]


def _stored(ctx: typer.Context) -> tuple[list[ProviderConfig], dict[str, list[str]]]:
    """The enabled stored providers and the stored aliases the config file does not shadow;
    nothing (with one line on stderr) when the database cannot be read."""
    from llmgw.errors import LlmgwError
    from llmgw.providers.stored_view import effective_settings

    st = state(ctx)
    try:
        merged = effective_settings(st.settings, st.engine())
    except LlmgwError as exc:
        print(f"note: stored providers and aliases not read: {exc.message}", file=sys.stderr)
        return [], {}
    config = {p.name for p in st.settings.providers}
    extra = {
        name: [c if isinstance(c, str) else c.target for c in cands]
        for name, cands in merged.aliases.items()
        if name not in st.settings.aliases
    }
    return [p for p in merged.providers if p.name not in config], extra


@providers_app.command("list")
def providers_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the providers, their models and where each credential comes from, and the aliases.

    The config file's first, then the enabled ones stored in the database (`providers add`,
    `providers aliases add`; source "database"). Config-file names win a clash.
    """
    from llmgw.usage.pricing import currency_of

    settings = state(ctx).settings
    stored, stored_aliases = _stored(ctx)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "kind": p.kind,
            "source": source,
            "base_url": mask_url(p.base_url or DEFAULT_BASE[p.kind]),
            "models": list(p.models),
            "credential": _credential(p) if source == "config" else "sealed in the database",
            "max_concurrency": p.max_concurrency,
            "currency": currency_of(p),
            "unpriced": _unpriced(p),
        }
        for source, group in (("config", settings.providers), ("database", stored))
        for p in group
    ]
    aliases = {
        name: [c if isinstance(c, str) else c.target for c in cands]
        for name, cands in settings.aliases.items()
    } | stored_aliases
    if as_json:
        emit_json({"providers": rows, "aliases": aliases})
        return
    for r in rows:  # a model with no known price is flagged, never silently free
        r["models"] = [f"{m} (no price)" if m in r["unpriced"] else m for m in r["models"]]
    print_table(
        rows,
        ["name", "kind", "source", "base_url", "models", "currency", "credential"],
        title="providers",
        wrap=("base_url", "models", "credential"),
        optional=("source",),
    )
    unpriced = [(r["name"], m) for r in rows for m in r["unpriced"]]
    if unpriced:
        names = ", ".join(f"{p}/{m}" for p, m in unpriced)
        print(
            f"warning: no price for {names}: their requests are recorded at cost 0 "
            '(set [providers.prices."MODEL"]; `llmgw providers prices` shows the table)',
            file=sys.stderr,
        )
    if aliases:
        print_table(
            [
                {
                    "alias": k,
                    "source": "database" if k in stored_aliases else "config",
                    "candidates": v,
                }
                for k, v in aliases.items()
            ],  # fmt: skip
            ["alias", "source", "candidates"],
            title="aliases",
            wrap=("candidates",),
        )


def _status_rows(ctx: typer.Context) -> list[dict[str, Any]]:
    return state(ctx).admin().providers_status()  # with the global --url: the live router state


def _fmt(value: Any, pattern: str) -> Any:
    return format(value, pattern) if isinstance(value, int | float) else value


@providers_app.command("status")
def providers_status(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            hidden=True,
            help="Deprecated: use the global option (`llmgw --url URL providers status`).",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LLMGW_API_KEY",
            hidden=True,
            help="Deprecated: use the global --token (LLMGW_TOKEN).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Health of each (provider, model): status, EWMA latency, error rate, last error.

    Without --url: what the servers last wrote to the database (provider_status). With the
    global --url and an admin --token: the running server's live router state, with the
    breaker, attempts in flight and requests in the last minute.
    """
    st = state(ctx)
    if url is not None and st.url is None:  # the command's own --url/--api-key of earlier versions
        st.url = url
        st.token = st.token or api_key
    rows = _status_rows(ctx)
    if url is not None:  # after the answer: an error stays one Error line and its hint
        print(
            "note: `providers status --url` is deprecated; use `llmgw --url URL --token KEY "
            "providers status` (it asks the admin API, which needs an admin's key)",
            file=sys.stderr,
        )
    if as_json:
        emit_json(rows)
        return
    live = any(r.get("live") for r in rows)
    for r in rows:
        r["error_rate"] = _fmt(r.get("error_rate"), ".1%")
        r["latency_ms"] = _fmt(r.get("latency_ms"), ".0f")
        if isinstance(r.get("updated_at"), str):  # tables show seconds; --json has the exact time
            r["updated_at"] = when_text(r["updated_at"])
        if live:
            r["req/min"] = r.get("requests_per_min")
            r["in flight"] = r.get("in_flight")
    cols = ["provider", "model", "status", "latency_ms", "error_rate"]
    cols += (
        ["req/min", "in flight", "breaker", "last_error"] if live else ["updated_at", "last_error"]
    )
    print_table(
        rows,
        cols,
        title="provider status",
        wrap=("last_error",),
        # narrow terminals drop these, first one first
        optional=("in flight", "req/min", "breaker", "error_rate")
        if live
        else ("updated_at", "error_rate"),
    )


# -- providers prices ---------------------------------------------------------------------------


@providers_app.command("prices")
def providers_prices(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Only this provider (default: every provider).")
    ] = None,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Also the bundled prices of models the provider does not list."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The effective price table: per model, the price per 1M tokens and where it came from.

    A price comes from the provider's [providers.prices."MODEL"] (config), else from the bundled,
    versioned table (bundled: with its date and source), else the model is unpriced and costs 0.
    Each provider bills in one currency; costs are never converted. Stored providers (`providers
    add`) are listed with the config file's. With the global --url: the running server's table.
    """
    st = state(ctx)
    rows = st.admin().providers_prices()
    if name is not None:
        if not any(r["provider"] == name for r in rows):
            if st.url is not None:
                raise NotFound(f"the server has no provider named {name!r}")
            _provider(st.settings, name)  # unknown: the message every command gives
        rows = [r for r in rows if r["provider"] == name]
    if not show_all:  # the models each provider offers, and every configured price
        rows = [r for r in rows if r["offered"] or r["source"] == "config"]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        units = r.get("units")
        if units:
            r["billing"] = (
                f"{units['per_1k_units']}/1k units x{units['input_multiplier']}"
                f"/x{units['output_multiplier']}"
            )
        r["source"] = (f"bundled {r['as_of']}" if r["source"] == "bundled" else r["source"]) + (
            " *" if r.get("note") else ""
        )
    version = rows[0]["table_version"] if rows else None
    print_table(
        rows,
        ["provider", "model", "currency", "input", "output", "source", "billing", "reference"],
        title=f"prices per 1M tokens (bundled table {version})" if version else "prices",
        wrap=("reference",),
        optional=("reference", "billing"),
    )
    notes = [f"{r['provider']}/{r['model']}: {r['note']}" for r in rows if r.get("note")]
    for n in notes:
        print(f"* {n}")


# -- providers models ---------------------------------------------------------------------------


def _yes_no(value: Any) -> str:
    return "?" if value is None else "yes" if value else "no"


def _model_row(m: dict[str, Any]) -> dict[str, Any]:
    caps = m.get("capabilities") or {}
    price = m.get("price")
    flags = []
    if m.get("missing"):
        flags.append("MISSING upstream")
    elif m.get("listed") is None and not m.get("alias"):
        flags.append("unverified")
    return {
        "id": m["id"],
        "type": m.get("type"),
        "context": m.get("context_window") or ("-" if m.get("alias") else "?"),
        "tools": "-" if m.get("alias") else _yes_no(caps.get("tools")),
        "vision": "-" if m.get("alias") else _yes_no(caps.get("vision")),
        "price in/out": "-"
        if price is None
        else f"{price['input']}/{price['output']} {price['currency']}",
        "flags": ", ".join(flags) or ("-> " + ", ".join(m.get("targets") or [])),
    }


def _with_stored_secrets(ctx: typer.Context) -> tuple[Settings, Any]:
    """The settings with the enabled stored providers and aliases, and a resolver that also
    answers their opened credentials; the config file's alone (with a note on stderr) when the
    database or the sealing key cannot be read."""
    from llmgw.errors import LlmgwError
    from llmgw.providers.managed import ProviderStore, StoredSecrets, merged_settings, sealer_for
    from llmgw.providers.stored_aliases import AliasStore

    st = state(ctx)
    try:
        engine = st.engine()
        stored = ProviderStore(engine, sealer_for(st.settings)).enabled_configs()
        merged, creds, _ = merged_settings(st.settings, stored, AliasStore(engine).as_config())
    except LlmgwError as exc:
        print(f"note: stored providers not read: {exc.message}", file=sys.stderr)
        return st.settings, None
    return merged, StoredSecrets(creds, warn=lambda _msg: None)


@providers_app.command("models")
def providers_models(
    ctx: typer.Context,
    provider: Annotated[
        str | None, typer.Option("--provider", "-p", help="Only this provider's models.")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="With --url: make the server ask every provider now instead of answering "
            "from its cache (needs an admin's key).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The model catalog: each provider's models with type, context window, capabilities,
    price, and a flag on configured models the upstream no longer lists.

    Without --url: asks every provider now, the config file's and the enabled stored ones (a
    catalog of its own, always fresh).
    With the global --url and an admin --token: the running server's cached catalog (refreshed
    in the background every routing.models_refresh_interval seconds); --refresh asks again first.
    """
    st = state(ctx)
    if st.url is not None:
        catalog = st.admin().models_catalog(refresh=refresh)
    else:
        from llmgw.routing.catalog import fresh_catalog

        settings, secrets = _with_stored_secrets(ctx)
        if provider is not None:
            _provider(settings, provider)  # an unknown name: the message every command gives
        catalog = asyncio.run(fresh_catalog(settings, secrets))
    if provider is not None:
        catalog["data"] = [m for m in catalog["data"] if m.get("provider") == provider]
        catalog["providers"] = [p for p in catalog["providers"] if p["provider"] == provider]
        if st.url is not None and not catalog["providers"]:
            raise NotFound(
                f"the server has no provider named {provider!r}",
                hint="see `llmgw providers models` without --provider",
            )
    if as_json:
        emit_json(catalog)
        return
    print_table(
        [_model_row(m) for m in catalog["data"]],
        ["id", "type", "context", "tools", "vision", "price in/out", "flags"],
        title="models",
        wrap=("flags",),
        optional=("vision", "tools", "price in/out", "type"),
    )
    out = stdout()
    for p in catalog["providers"]:
        when = "never" if p["refreshed_at"] is None else f"at {when_text(p['refreshed_at'])} UTC"
        line = f"{p['provider']} ({p['source']}): {p['models']} models, listed {when}"
        if p["error"]:
            line += f"; [yellow]stale[/yellow]: {p['error']}"
        if p["missing"]:
            line += f"; [red]no longer listed[/red]: {', '.join(p['missing'])}"
        out.print(line, highlight=False)


# -- providers test -----------------------------------------------------------------------------


@providers_app.command("test")
def providers_test(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Provider name (the config file's or an enabled stored one).")
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Model for the 1-token chat (default: the first configured chat model)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for each network check.")] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """One real round trip to a provider, with a clear diagnosis of what failed.

    Checks DNS, TCP and TLS to the API (and the token host: GigaChat's OAuth, Yandex IAM with a
    service-account key), trusting what the server trusts, then sends a 1-token chat (or lists models when no model is known). Exit 0 with the latency when it
    works; otherwise one line: auth rejected, TLS failure, connection refused, timeout...
    """
    from llmgw.providers.probe import probe

    settings, secrets = _with_stored_secrets(ctx)
    _provider(settings, name)  # an unknown name: the same message as every providers command
    result = asyncio.run(probe(settings, name, model=model, check_seconds=timeout, secrets=secrets))
    if as_json:
        emit_json(result)
        return
    what = (
        f"1-token chat with {result['model']}"
        if result["check"] == "chat"
        else f"{result['models']} models listed"
    )
    stdout().print(f"[green]OK[/green] {name}: {what} in {result['latency_ms']:.0f} ms")


# -- providers set-secret -----------------------------------------------------------------------


@providers_app.command("set-secret")
def providers_set_secret(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Provider name from the config.")],
    from_env: Annotated[
        str | None,
        typer.Option("--from-env", metavar="VAR", help="Read the secret from this env variable."),
    ] = None,
    from_stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the secret from standard input.")
    ] = False,
) -> None:
    """Store a provider's credential in the OS keyring (service "llmgw", user NAME).

    Prompts without echo unless --from-env or --stdin is given. At run time the env variable
    named by the provider's api_key_env still wins over the keyring.
    """
    cfg = _provider(state(ctx).settings, name)
    problem = _keyring_problem()
    if problem is not None:
        var = cfg.api_key_env or f"{name.upper().replace('-', '_')}_API_KEY"
        raise ConfigError(
            f"{problem} to store the secret of {name!r}",
            hint=f"export it as an environment variable instead (api_key_env = {var!r})",
        )
    if from_env and from_stdin:
        raise UsageError("use either --from-env or --stdin, not both")
    if from_env:
        secret = os.environ.get(from_env, "")
        if not secret:
            raise UsageError(f"environment variable {from_env} is not set or empty")
    elif from_stdin:
        secret = sys.stdin.readline()
    else:
        import getpass

        secret = getpass.getpass(f"Secret for {name}: ")
    secret = secret.strip()
    if not secret:
        raise UsageError("the secret is empty; nothing stored")
    import keyring

    try:
        keyring.set_password(KEYRING_SERVICE, name, secret)
    except Exception as exc:  # noqa: BLE001 - KeyringError, or a backend's own (e.g. no D-Bus)
        raise ConfigError(
            f"the OS keyring refused to store the secret: {type(exc).__name__}",
            hint="unlock the keyring, or use the provider's environment variable",
        ) from None
    out = stdout()
    out.print(f"stored the secret of {name} in the OS keyring (service {KEYRING_SERVICE!r})")
    if cfg.api_key_env and os.environ.get(cfg.api_key_env):
        out.print(f"[yellow]note:[/yellow] ${cfg.api_key_env} is set and takes precedence")


# -- providers stored in the database (managed at runtime) ------------------------------------
_YES = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask; required when stdin is not a terminal.")
]
_NAME = Annotated[str, typer.Argument(metavar="NAME", help="The stored provider's name.")]
_BASE = Annotated[str | None, typer.Option("--base-url", help="The provider's API base URL.")]
_MODELS = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="A model it offers (repeat; none: ask the provider)."),
]
_FOLDER = Annotated[str | None, typer.Option("--folder-id", help="YandexGPT: the folder ID.")]
_CONC = Annotated[
    int | None, typer.Option("--max-concurrency", help="Most requests in flight to it at once.")
]
_KEY_STDIN = Annotated[
    bool,
    typer.Option(
        "--api-key-stdin",
        help="Read the credential from stdin (asked without echo on a terminal); it is stored "
        "sealed and never shown.",
    ),
]


def _secret(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    if sys.stdin.isatty():
        value = str(typer.prompt("API key", hide_input=True, err=True))
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise UsageError("the credential read from stdin is empty", hint="pipe the key in")
    return value


_SET = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="FIELD=VALUE",
        help="Any other [[providers]] field (repeat), e.g. --set idle_timeout=60 or --set "
        'prices=\'{"m": {"input": 1, "output": 2}}\'; VALUE is JSON when it parses, else text.',
    ),
]
_UNSET = Annotated[
    list[str] | None,
    typer.Option(
        "--unset",
        metavar="FIELD",
        help="Remove a field so its default applies again (repeat), e.g. --unset max_concurrency "
        "or --unset models (then the provider is asked for its models).",
    ),
]


def _fields(
    base_url: str | None,
    models: list[str] | None,
    folder: str | None,
    conc: int | None,
    sets: list[str] | None = None,
    unsets: list[str] | None = None,
) -> dict[str, Any]:
    from llmgw.cli.provider_fields import field_changes

    given = {"base_url": base_url, "models": models, "folder_id": folder, "max_concurrency": conc}
    return field_changes(given, sets, unsets)


def _show_stored(record: dict[str, Any], as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(record)
        return
    state_ = "enabled" if record.get("enabled") else "disabled"
    models = ", ".join(record.get("models") or []) or "asked from the provider"
    typer.echo(f"{verb} provider {record['name']} ({record['kind']}, {state_}; models: {models})")
    typer.echo("running gateways apply it within seconds, without a restart")


@providers_app.command("stored")
def providers_stored(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the providers stored in the database (added with `providers add`), never a secret."""
    rows = state(ctx).admin().providers_stored()
    if as_json:
        emit_json(rows)
        return
    table = [
        {
            "name": r["name"],
            "kind": r["kind"],
            "enabled": "yes" if r["enabled"] else "no",
            "models": ", ".join(r.get("models") or []) or "(ask)",
            "base_url": r.get("base_url") or "(default)",
            "secret": "sealed" if r["has_secret"] else "none",
            "note": "shadowed by the config file" if r.get("shadowed_by_config") else "",
        }
        for r in rows
    ]
    print_table(table, ["name", "kind", "enabled", "models", "base_url", "secret", "note"])


@providers_app.command("add")
def providers_add(
    ctx: typer.Context,
    name: _NAME,
    kind: Annotated[
        str, typer.Option("--kind", help="openai, gigachat or yandexgpt.", show_default=False)
    ],
    base_url: _BASE = None,
    models: _MODELS = None,
    folder_id: _FOLDER = None,
    max_concurrency: _CONC = None,
    sets: _SET = None,
    api_key_stdin: _KEY_STDIN = False,
    as_json: JsonOpt = False,
) -> None:
    """Store a provider in the database; running gateways serve it within seconds, no restart.

    A name the config file defines is refused: config-file providers are read-only and win.
    """
    fields = _fields(base_url, models, folder_id, max_concurrency, sets)
    record = state(ctx).admin().providers_add(name, kind, fields, secret=_secret(api_key_stdin))
    _show_stored(record, as_json, "added")


@providers_app.command("edit")
def providers_edit(
    ctx: typer.Context,
    name: _NAME,
    base_url: _BASE = None,
    models: _MODELS = None,
    folder_id: _FOLDER = None,
    max_concurrency: _CONC = None,
    sets: _SET = None,
    unsets: _UNSET = None,
    api_key_stdin: _KEY_STDIN = False,
    remove_api_key: Annotated[
        bool, typer.Option("--remove-api-key", help="Delete the stored credential.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change only the given fields of a stored provider; the others keep their values.

    --model (repeat) replaces the whole model list; --set FIELD=VALUE changes any other field;
    --unset FIELD removes one (its default applies again). Applied within seconds; requests in
    flight finish on the old settings.
    """
    fields = _fields(base_url, models, folder_id, max_concurrency, sets, unsets)
    if remove_api_key and api_key_stdin:
        raise UsageError("give --api-key-stdin or --remove-api-key, not both")
    secret = "" if remove_api_key else _secret(api_key_stdin)
    if not fields and secret is None:
        raise UsageError(
            "nothing to change",
            hint="give --base-url, --model, --set FIELD=VALUE, --unset FIELD, --api-key-stdin "
            "or --remove-api-key",
        )
    record = state(ctx).admin().providers_edit(name, fields, secret=secret)
    _show_stored(record, as_json, "changed")


@providers_app.command("disable")
def providers_disable(
    ctx: typer.Context, name: _NAME, as_json: JsonOpt = False, yes: _YES = False
) -> None:
    """Stop sending new requests to a stored provider (asks first); running ones finish."""
    confirm(f"disable provider {name}", "its models answer 404 within seconds", yes=yes)
    _show_stored(state(ctx).admin().providers_set_enabled(name, False), as_json, "disabled")


@providers_app.command("enable")
def providers_enable(ctx: typer.Context, name: _NAME, as_json: JsonOpt = False) -> None:
    """Enable a disabled stored provider again."""
    _show_stored(state(ctx).admin().providers_set_enabled(name, True), as_json, "enabled")


@providers_app.command("remove")
def providers_remove(
    ctx: typer.Context, name: _NAME, as_json: JsonOpt = False, yes: _YES = False
) -> None:
    """Delete a stored provider and its credential (asks first); running requests finish."""
    confirm(f"remove provider {name}", "its settings and credential are deleted", yes=yes)
    record = state(ctx).admin().providers_remove(name)
    if as_json:
        emit_json(record)
        return
    typer.echo(f"removed provider {name}; running gateways stop routing to it within seconds")
