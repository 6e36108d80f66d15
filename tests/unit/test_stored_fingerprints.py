"""The fingerprints a running gateway polls (``server/reload.py``) change on every add, edit
and removal of a stored provider or alias, including a removal and a re-add under the same
name between two polls (revision 1 again), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from llmgw.providers.managed import ProviderStore
from llmgw.providers.stored_aliases import AliasStore


def test_every_change_changes_the_fingerprints(engine: Engine) -> None:
    providers, aliases = ProviderStore(engine), AliasStore(engine)
    seen = [(providers.fingerprint(), aliases.fingerprint())]

    def changed() -> None:
        now = (providers.fingerprint(), aliases.fingerprint())
        assert now not in seen
        seen.append(now)

    providers.add("vllm", "openai", {"base_url": "http://127.0.0.1:9/v1"}, None)
    changed()
    aliases.add("smart", ["vllm/llama"])
    changed()
    providers.remove("vllm")
    providers.add("vllm", "openai", {"base_url": "http://127.0.0.1:8/v1"}, None)
    changed()  # revision 1 both times
    aliases.remove("smart")
    aliases.add("smart", ["vllm/qwen"])
    changed()
    aliases.edit("smart", [{"target": "vllm/qwen", "weight": 2}])
    changed()
    assert aliases.get("smart").targets == [{"target": "vllm/qwen", "weight": 2.0}]
    assert aliases.as_config()["smart"][0].weight == 2.0  # type: ignore[union-attr]
