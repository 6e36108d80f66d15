"""Provider secrets (env first, then the OS keyring; the fail backend detected) and build_providers."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from llmgw.config import ProviderConfig, Settings
from llmgw.errors import ConfigError
from llmgw.providers.openai_compat import OpenAICompatProvider
from llmgw.providers.registry import SecretResolver, build_providers, provider_factories


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend for tests."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class BrokenKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("dbus is not running")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def cfg(name: str = "openai", **kw: object) -> ProviderConfig:
    return ProviderConfig(name=name, kind="openai", **kw)


def test_env_wins_over_keyring(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password("llmgw", "openai", "from-keyring")
    resolver = SecretResolver({"OPENAI_KEY": "from-env"})
    assert resolver.get(cfg(api_key_env="OPENAI_KEY")) == "from-env"
    assert memory_keyring.reads == 0  # the keyring is not even asked


def test_keyring_used_when_env_is_missing_or_empty(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.set_password("llmgw", "openai", "from-keyring")
    assert SecretResolver({}).get(cfg(api_key_env="OPENAI_KEY")) == "from-keyring"
    assert SecretResolver({"OPENAI_KEY": "  "}).get(cfg(api_key_env="OPENAI_KEY")) == "from-keyring"
    assert SecretResolver({}).get(cfg()) == "from-keyring"  # no api_key_env at all
    assert SecretResolver({}).get(cfg("other")) is None  # username = provider name


def test_fail_backend_is_detected_once_in_one_line(no_keyring: None) -> None:
    lines: list[str] = []
    resolver = SecretResolver({"K": "env-secret"}, warn=lines.append)
    assert resolver.get(cfg("a", api_key_env="K")) == "env-secret"
    assert resolver.get(cfg("b")) is None
    assert resolver.get(cfg("c")) is None
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "no OS keyring backend" in lines[0] and "environment variables" in lines[0]
    assert resolver.keyring_notice == lines[0]


def test_broken_backend_degrades_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring())
    try:
        lines: list[str] = []
        resolver = SecretResolver({}, warn=lines.append)
        assert resolver.get(cfg()) is None
        assert resolver.get(cfg("b")) is None
        assert len(lines) == 1 and "RuntimeError" in lines[0] and "dbus" not in lines[0]
    finally:
        keyring.set_keyring(previous)


def test_require_explains_where_it_looked(no_keyring: None) -> None:
    resolver = SecretResolver({}, warn=lambda _: None)
    with pytest.raises(ConfigError) as info:
        resolver.require(cfg(api_key_env="OPENAI_KEY"))
    assert "$OPENAI_KEY" in info.value.message and "keyring" in info.value.message
    assert "llmgw providers set-secret openai" in (info.value.hint or "")


def test_build_openai_providers(no_keyring: None) -> None:
    settings = Settings(
        providers=[
            cfg("cloud", api_key_env="CLOUD_KEY"),
            cfg("local", base_url="http://127.0.0.1:9001/v1"),  # vLLM/Ollama: no key needed
        ]
    )
    providers = build_providers(
        settings, SecretResolver({"CLOUD_KEY": "sk-cloud"}, warn=lambda _: None)
    )
    assert set(providers) == {"cloud", "local"}
    cloud, local = providers["cloud"], providers["local"]
    assert isinstance(cloud, OpenAICompatProvider) and isinstance(local, OpenAICompatProvider)
    assert cloud.transport.base_url == "https://api.openai.com/v1"
    assert cloud.transport._headers["Authorization"] == "Bearer sk-cloud"
    assert "Authorization" not in local.transport._headers
    assert "sk-cloud" not in repr(cloud)


def test_build_fails_clearly_without_a_required_key(no_keyring: None) -> None:
    settings = Settings(providers=[cfg("cloud", api_key_env="CLOUD_KEY")])
    with pytest.raises(ConfigError, match="provider 'cloud': no credential"):
        build_providers(settings, SecretResolver({}, warn=lambda _: None))
    settings = Settings(providers=[cfg("openai")])  # api.openai.com needs a key too
    with pytest.raises(ConfigError):
        build_providers(settings, SecretResolver({}, warn=lambda _: None))


def test_unknown_kind_is_a_config_error() -> None:
    bad = ProviderConfig.model_construct(name="x", kind="nope")  # type: ignore[arg-type]
    settings = Settings.model_construct(providers=[bad])
    with pytest.raises(ConfigError, match="kind 'nope' is not supported"):
        build_providers(settings, SecretResolver({}, use_keyring=False))
    assert "openai" in provider_factories()


def test_empty_chainer_counts_as_no_keyring() -> None:
    from keyring.backends import chainer

    class EmptyChainer(chainer.ChainerBackend):
        backends: list[KeyringBackend] = []  # no usable backend behind the chainer

    previous = keyring.get_keyring()
    keyring.set_keyring(EmptyChainer())
    try:
        lines: list[str] = []
        assert SecretResolver({}, warn=lines.append).get(cfg()) is None
        assert len(lines) == 1 and "no OS keyring backend" in lines[0]
    finally:
        keyring.set_keyring(previous)
