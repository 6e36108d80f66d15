"""The one "providers changed" hook (``server/reload.py``) and the merge rule it carries: the
config file's providers and aliases win a name clash over stored ones, with a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmgw.config import AliasTarget, ProviderConfig, Settings
from llmgw.routing.resolve import Resolver
from llmgw.server.reload import ProvidersChanged, ProviderSet


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        providers=[{"name": "giga", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                    "models": ["GigaChat"]}],
        aliases={"fast": ["giga/GigaChat"]},
    )  # fmt: skip


def test_subscribers_get_the_current_set_then_every_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = _settings(tmp_path)
    hook = ProvidersChanged(ProviderSet(s, Resolver(s)))
    seen: list[Any] = []

    def broken(now: ProviderSet) -> None:
        raise RuntimeError("consumer bug")

    hook.subscribe(broken)
    stop = hook.subscribe(lambda now: seen.append(now.settings))
    assert seen == [s]  # at once: a consumer built late still sees the stored providers
    s2 = s.model_copy(update={"aliases": {**s.aliases, "smart": ["giga/GigaChat"]}})
    hook.fire(ProviderSet(s2, Resolver(s2)))
    assert seen == [s, s2] and hook.current.settings is s2
    assert "a providers-changed subscriber failed" in caplog.text  # the others still ran
    stop()
    stop()  # idempotent
    hook.fire(ProviderSet(s, Resolver(s)))
    assert seen == [s, s2]


def test_the_config_file_wins_a_name_clash(tmp_path: Path) -> None:
    from llmgw.providers.stored_view import merged_settings

    s = _settings(tmp_path)
    stored: list[tuple[ProviderConfig, str | None]] = [
        (ProviderConfig(name="giga", kind="openai", base_url="http://evil/v1"), "k1"),
        (ProviderConfig(name="vllm", kind="openai", base_url="http://127.0.0.1:8/v1"), "k2"),
    ]
    aliases: dict[str, list[str | AliasTarget]] = {
        "fast": ["vllm/llama"],
        "smart": [AliasTarget(target="vllm/llama", weight=2)],
    }
    merged, creds, warnings = merged_settings(s, stored, aliases)
    assert [p.name for p in merged.providers] == ["giga", "vllm"]
    assert merged.provider("giga") == s.provider("giga")  # not the stored one
    assert creds == {"vllm": "k2"}
    assert merged.aliases["fast"] == ["giga/GigaChat"] and "smart" in merged.aliases
    assert len(warnings) == 2
    assert all("config file" in w and "win" in w for w in warnings)
