"""Provider secrets (env, then the OS keyring) and the factory that builds providers from settings."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from llmgw.config import ProviderConfig, Settings
from llmgw.errors import ConfigError
from llmgw.providers.base import Provider

__all__ = ["KEYRING_SERVICE", "SecretResolver", "build_providers", "provider_factories"]

KEYRING_SERVICE = "llmgw"
log = logging.getLogger("llmgw.providers")


class SecretResolver:
    """Finds a provider's credential: the env variable named by ``api_key_env``, then the keyring.

    The keyring entry is service ``llmgw``, username = the provider's name (what
    ``llmgw providers set-secret NAME`` stores). Without a usable keyring backend (headless servers,
    CI: ``keyring.backends.fail.Keyring``), the resolver says so once, in one line through
    ``warn`` (default: the ``llmgw.providers`` logger), and uses environment variables only.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        use_keyring: bool = True,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._env = os.environ if env is None else env
        self._use_keyring = use_keyring
        self._warn = warn or log.warning
        self._backend: Any = None
        self._keyring_checked = False
        self.keyring_notice: str | None = None
        """Why the keyring is not used, once that was found out (shown by CLI commands)."""

    def _keyring(self) -> Any:
        """The keyring backend, or ``None`` when there is no usable one (said once)."""
        if self._keyring_checked:
            return self._backend
        self._keyring_checked = True
        if not self._use_keyring:
            return None
        try:
            import keyring
            from keyring.backends import chainer, fail
        except ImportError:  # pragma: no cover - keyring is a dependency
            self._notice("the keyring package is not installed")
            return None
        try:
            backend = keyring.get_keyring()
        except Exception as exc:  # noqa: BLE001 - a broken backend must not stop the gateway
            self._notice(f"the OS keyring failed to load ({type(exc).__name__})")
            return None
        if isinstance(backend, fail.Keyring) or (
            isinstance(backend, chainer.ChainerBackend) and not backend.backends
        ):
            self._notice("no OS keyring backend is available")
            return None
        self._backend = backend
        return backend

    def _notice(self, reason: str) -> None:
        self.keyring_notice = (
            f"{reason}; provider secrets come from environment variables only "
            "(set each provider's api_key_env)"
        )
        self._warn(self.keyring_notice)

    def from_env(self, config: ProviderConfig) -> str | None:
        """The credential from the provider's ``api_key_env`` variable, if set and non-empty."""
        if config.api_key_env:
            value = self._env.get(config.api_key_env, "").strip()
            return value or None
        return None

    def from_keyring(self, name: str) -> str | None:
        """The credential stored in the keyring for provider ``name``, if any."""
        backend = self._keyring()
        if backend is None:
            return None
        try:
            value = backend.get_password(KEYRING_SERVICE, name)
        except Exception as exc:  # noqa: BLE001 - e.g. a locked or unreachable Secret Service
            self._backend = None
            self._notice(f"reading the OS keyring failed ({type(exc).__name__})")
            return None
        return value or None

    def get(self, config: ProviderConfig) -> str | None:
        """The provider's credential (env first, then keyring), or ``None`` when there is none."""
        return self.from_env(config) or self.from_keyring(config.name)

    def require(self, config: ProviderConfig) -> str:
        """The provider's credential, or a ``ConfigError`` saying where it was looked for."""
        secret = self.get(config)
        if secret is None:
            where = f"${config.api_key_env} or " if config.api_key_env else ""
            raise ConfigError(
                f"provider {config.name!r}: no credential found in {where}the OS keyring",
                hint=f"export {config.api_key_env or 'the variable named by api_key_env'} or run "
                f"`llmgw providers set-secret {config.name}`",
            )
        return secret


ProviderFactory = Callable[[ProviderConfig, SecretResolver], Provider]


def _openai(config: ProviderConfig, secrets: SecretResolver) -> Provider:
    from llmgw.providers.openai_compat import DEFAULT_BASE_URL, OpenAICompatProvider

    # Local servers (vLLM, Ollama) often need no key; OpenAI itself, or a declared env var, does.
    needs_key = (
        config.api_key_env is not None or (config.base_url or DEFAULT_BASE_URL) == DEFAULT_BASE_URL
    )
    key = secrets.require(config) if needs_key else secrets.get(config)
    return OpenAICompatProvider(config, key)


def _gigachat(config: ProviderConfig, secrets: SecretResolver) -> Provider:
    from llmgw.providers.gigachat import GigaChatProvider

    return GigaChatProvider(config, secrets.require(config))  # the authorization key


def _yandexgpt(config: ProviderConfig, secrets: SecretResolver) -> Provider:
    from llmgw.providers.yandexgpt import YandexGPTProvider

    # A service-account key file replaces the API key (IAM tokens); otherwise the key is required.
    key = secrets.get(config) if config.service_account_key_file else secrets.require(config)
    return YandexGPTProvider(config, key)


# kind -> factory. Adapters for other kinds add their entry here (imports stay inside the factory
# so that importing this module does not load aiohttp).
_FACTORIES: dict[str, ProviderFactory] = {
    "openai": _openai,
    "gigachat": _gigachat,
    "yandexgpt": _yandexgpt,
}


def provider_factories() -> dict[str, ProviderFactory]:
    """The kind -> factory table (a copy)."""
    return dict(_FACTORIES)


def build_providers(settings: Settings, secrets: SecretResolver) -> dict[str, Provider]:
    """One provider per ``[[providers]]`` entry, by name; ``ConfigError`` for an unusable entry."""
    out: dict[str, Provider] = {}
    for config in settings.providers:
        factory = _FACTORIES.get(config.kind)
        if factory is None:
            raise ConfigError(
                f"provider {config.name!r}: kind {config.kind!r} is not supported by this version",
                hint=f"supported kinds: {', '.join(sorted(_FACTORIES))}",
            )
        out[config.name] = factory(config, secrets)
    return out
