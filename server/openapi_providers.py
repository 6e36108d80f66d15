"""The ``/admin/v1/providers`` operations that manage stored providers (issue 16, part 2), in
the OpenAPI document with their examples; ``openapi_admin.admin_paths`` adds them."""

from __future__ import annotations

from typing import Any

__all__ = ["stored_provider_paths"]

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
_NAME = {
    "name": "name", "in": "path", "required": True, "schema": {"type": "string"},
    "description": "The stored provider's name (a config-file provider answers 409).",
    "example": "vllm",
}  # fmt: skip


def stored_provider_paths(p: str, op: Any, listed: Any) -> dict[str, Any]:
    """The path items, built with ``openapi_admin``'s ``_op`` and ``_listed``."""

    def named(o: dict[str, Any]) -> dict[str, Any]:
        o["parameters"] = [dict(_NAME)]
        return o

    one = ("401", "403", "404", "409", "429", "503")
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
