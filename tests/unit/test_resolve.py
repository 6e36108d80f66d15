"""Model-name resolution: provider/model[:version], unambiguous bare names, aliases, 404s."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgw.config import Settings
from llmgw.errors import ModelNotFound
from llmgw.routing.resolve import Resolver, Target


@pytest.fixture
def resolver(tmp_path: Path) -> Resolver:
    def prov(name: str, models: list[str]) -> dict[str, object]:
        return {
            "name": name,
            "kind": "openai",
            "base_url": "http://127.0.0.1:1/v1",
            "models": models,
        }

    return Resolver(
        Settings(
            home=tmp_path,
            providers=[
                prov("local", ["gpt-4o-mini", "llama3:8b", "shared"]),
                prov("other", ["shared", "yandexgpt-lite"]),
                prov("open", []),
            ],
            aliases={
                "smart": ["other/yandexgpt-lite:rc", {"target": "local/gpt-4o-mini", "weight": 3}],
                "half": ["gone/model", "local/gpt-4o-mini"],
                "none": ["gone/model", "local/nope"],
            },
        )
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("local/gpt-4o-mini", Target("local", "gpt-4o-mini")),
        ("gpt-4o-mini", Target("local", "gpt-4o-mini")),
        ("other/yandexgpt-lite:rc", Target("other", "yandexgpt-lite", "rc")),
        ("yandexgpt-lite:latest", Target("other", "yandexgpt-lite", "latest")),
        ("local/llama3:8b", Target("local", "llama3:8b")),  # a colon inside a model name
        ("llama3:8b", Target("local", "llama3:8b")),
        ("open/anything-at-all", Target("open", "anything-at-all")),
        ("open/qwen:7b", Target("open", "qwen", "7b")),
    ],
)
def test_resolves(resolver: Resolver, name: str, expected: Target) -> None:
    assert resolver.resolve(name) == expected


def test_alias_lists_every_candidate_in_order(resolver: Resolver) -> None:
    first, second = resolver.candidates("smart")
    assert (first.qualified, first.alias, first.weight) == ("other/yandexgpt-lite:rc", "smart", 1.0)
    assert (second.qualified, second.weight) == ("local/gpt-4o-mini", 3.0)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("nope", "does not exist"),
        ("local/nope", "does not offer"),
        ("ghost/gpt-4o-mini", "does not exist"),
        ("shared", "several providers"),
        ("local/", "does not offer"),
    ],
)
def test_unknown_or_ambiguous_is_404(resolver: Resolver, name: str, needle: str) -> None:
    with pytest.raises(ModelNotFound) as exc:
        resolver.resolve(name)
    assert exc.value.http_status == 404 and exc.value.param == "model"
    assert needle in exc.value.message


def test_listing_and_bounded_memo(resolver: Resolver) -> None:
    assert resolver.model_ids() == [
        "local/gpt-4o-mini",
        "local/llama3:8b",
        "local/shared",
        "other/shared",
        "other/yandexgpt-lite",
    ]
    assert resolver.aliases == ["smart", "half", "none"]
    for i in range(10_000):  # client input never grows state without bound
        resolver.resolve(f"open/m{i}")
    assert len(resolver._memo) <= 4096


def test_an_alias_target_no_provider_offers_is_left_out(resolver: Resolver) -> None:
    """A stored provider disabled or removed leaves its aliases answering through the rest."""
    assert resolver.candidates("half") == (Target("local", "gpt-4o-mini", alias="half"),)
    with pytest.raises(ModelNotFound, match="gone/model"):
        resolver.candidates("none")
    assert resolver.direct("local/gpt-4o-mini") == Target("local", "gpt-4o-mini")
