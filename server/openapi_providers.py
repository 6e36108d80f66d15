"""The ``/admin/v1/providers`` operations that manage stored providers (issue 16, part 2), in
the OpenAPI document with their examples; ``openapi_admin.admin_paths`` adds them."""

from __future__ import annotations

from typing import Any

__all__ = ["alias_paths", "stored_provider_paths"]

_T = "2026-12-03T07:24:27.123456Z"
STORED = {
    "name": "vllm",
    "kind": "openai",
    "source": "database",
    "enabled": True,
    "shadowed_by_config": False,
    "has_secret": True,
    "revision": 1,
    "created_at": _T,
    "updated_at": _T,
    "base_url": "http://vllm.internal:8000/v1",
    "models": ["llama-3.1-8b"],
}
_ONE = ("401", "403", "404", "409", "429", "503")
"""The errors of an operation on one stored provider or alias."""


def _named(what: str, example: str) -> Any:
    """Gives an operation the ``{name}`` path parameter of a stored ``what``."""
    param = {
        "name": "name", "in": "path", "required": True, "schema": {"type": "string"},
        "description": f"The stored {what}'s name (a config-file {what} answers 409).",
        "example": example,
    }  # fmt: skip

    def named(o: dict[str, Any]) -> dict[str, Any]:
        o["parameters"] = [dict(param)]
        return o

    return named


def stored_provider_paths(p: str, op: Any, listed: Any) -> dict[str, Any]:
    """The path items, built with ``openapi_admin``'s ``_op`` and ``_listed``."""
    named, one = _named("provider", "vllm"), _ONE
    return {
        f"{p}/providers/stored": {"get": op("adminStoredProviders", "Stored providers",
            "The providers kept in the database (added through this API or `llmgw providers "
            "add`), enabled or not, never their credential (`has_secret`). "
            "`shadowed_by_config`: a config-file provider of the same name wins, so this row "
            "is ignored.", listed(STORED), errors=("401", "403", "429", "503"))},
        f"{p}/providers/{{name}}": {
            "patch": named(op("adminEditProvider", "Edit a stored provider",
                "Merge the given `[[providers]]` fields (null unsets one); `api_key` replaces "
                "the credential (empty string: remove it). Running gateways apply it within "
                "about `[routing] providers_reload_interval` (1 s); requests in flight finish "
                "on the old settings. Audited as `providers.edit` (the field names only).",
                {**STORED, "revision": 2, "models": ["llama-3.1-8b", "llama-3.1-70b"]},
                errors=(*one, "400"),
                body={"models": ["llama-3.1-8b", "llama-3.1-70b"]})),
            "delete": named(op("adminRemoveProvider", "Remove a stored provider",
                "Delete it and its credential. Gateways stop routing to it within seconds; "
                "running requests and streams finish. Audited as `providers.remove`.",
                {**STORED, "removed": True}, errors=one)),
        },
        f"{p}/providers/{{name}}/disable": {"post": named(op("adminDisableProvider",
            "Disable a stored provider", "No new request goes to it (its models answer 404) "
            "within seconds; running requests and streams finish. Idempotent; audited as "
            "`providers.disable`.", {**STORED, "enabled": False, "revision": 2}, errors=one))},
        f"{p}/providers/{{name}}/enable": {"post": named(op("adminEnableProvider",
            "Enable a stored provider", "Undo a disable; idempotent; audited as "
            "`providers.enable`.", {**STORED, "revision": 3}, errors=one))},
    }  # fmt: skip


def add_operation(op: Any) -> dict[str, Any]:
    """``POST /providers``: add a stored provider."""
    added: dict[str, Any] = op("adminAddProvider", "Add a provider",
        "Store a provider (`name`, `kind` and any `[[providers]]` field but `api_key_env`, "
        "`ca_bundle` and `service_account_key_file`); `api_key` is its credential, sealed with "
        "AES-GCM and never answered. Every running gateway serves it within about `[routing] "
        "providers_reload_interval` (1 s), without a restart. A name the config file defines "
        "is 409: config-file providers are read-only and win. Audited as `providers.add`.",
        STORED, errors=("400", "401", "403", "409", "429", "503"),
        body={"name": "vllm", "kind": "openai", "base_url": "http://vllm.internal:8000/v1",
              "models": ["llama-3.1-8b"], "api_key": "sk-..."})  # fmt: skip
    return added


ALIAS = {
    "name": "smart",
    "source": "database",
    "targets": ["giga/GigaChat", {"target": "yandex/yandexgpt-lite", "weight": 2.0}],
    "shadowed_by_config": False,
    "revision": 1,
    "created_at": _T,
    "updated_at": _T,
    "unresolved": [],
}


def alias_paths(p: str, op: Any, listed: Any) -> dict[str, Any]:
    """``/admin/v1/aliases``: aliases kept in the database beside the config file's."""
    named, one = _named("alias", "smart"), _ONE
    body = {"name": "smart", "targets": ["giga/GigaChat",
            {"target": "yandex/yandexgpt-lite", "weight": 2}]}  # fmt: skip
    return {
        f"{p}/aliases": {
            "get": op("adminAliases", "Aliases",
                "Every alias: the config file's `[aliases]` first (`source: config`, read-only, "
                "no revision or times), then the stored ones (`source: database`). "
                "`shadowed_by_config`: a config-file alias of the same name wins, so this row is "
                "ignored. `unresolved`: targets no provider offers right now (the alias falls "
                "back past them; a provider added later makes them resolve).",
                listed(ALIAS), errors=("401", "403", "429", "503")),
            "post": op("adminAddAlias", "Add an alias",
                "Store an alias: `name` (letters, digits, `. _ - : @ +`, no `/`) and `targets`, "
                "1 to 16 candidates in order, each `provider/model[:version]` or `{target, "
                "weight}` as in the config file's `[aliases]`. Every running gateway answers it "
                "within about `[routing] providers_reload_interval` (1 s), without a restart. "
                "A name the config file defines is 409: config-file aliases are read-only and "
                "win. Audited as `aliases.add`.",
                ALIAS, errors=("400", "401", "403", "409", "429", "503"), body=body),
        },
        f"{p}/aliases/{{name}}": {
            "patch": named(op("adminEditAlias", "Edit a stored alias",
                "Replace its `targets` (the whole ordered list). Applied within seconds; "
                "requests already routed finish on the old list. Audited as `aliases.edit` "
                "with the targets before and after.",
                {**ALIAS, "revision": 2, "targets": ["yandex/yandexgpt-lite"]},
                errors=(*one, "400"), body={"targets": ["yandex/yandexgpt-lite"]})),
            "delete": named(op("adminRemoveAlias", "Remove a stored alias",
                "Delete it: within seconds its name answers 404 `model_not_found` (a "
                "config-file alias of the same name, if any, takes over). Audited as "
                "`aliases.remove`.", {**ALIAS, "removed": True}, errors=one)),
        },
    }  # fmt: skip
