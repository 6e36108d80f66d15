"""The model catalog end to end: ``llmgw serve`` (uvicorn) in front of the three real emulators over
HTTP (GigaChat ``GET /models``, the OpenAI emulator's ``/v1/models``, YandexGPT's catalogue),
``GET /api/models`` and ``/v1/models`` from what each upstream lists, a configured model the
upstream no longer lists flagged, the admin refresh, and ``llmgw providers models`` locally and
with ``--url``.

Security: IN-7 (a key sees only the models of its allow-list, in ``/api/models`` too) and API5 /
AUTH-6 (the refresh, an upstream call, is admin-only: 403 for a plain key)."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmgw.admin.local import LocalAdmin
from llmgw.admin.ops import Actor
from llmgw.config import Settings
from llmgw.emulators import gigachat, openai, yandexgpt
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.server.app import gateway_of

from .conftest import UPSTREAM_KEY


@pytest.fixture
def emulators() -> Iterator[tuple[RunningServer, RunningServer, RunningServer]]:
    with (
        serve_in_thread(gigachat.create_app(max_concurrency=10)) as giga,
        serve_in_thread(yandexgpt.create_app()) as yc,
        serve_in_thread(openai.create_app(api_key=UPSTREAM_KEY)) as oa,
    ):
        yield giga, yc, oa


def _config(giga: str, yc: str, oa: str, db_file: str) -> str:
    """The gateway's config file (the CLI reads the same one)."""
    return f"""
[database]
url = "{db_file}"

[[providers]]
name = "gigachat"
kind = "gigachat"
base_url = "{giga}/api/v1"
auth_url = "{giga}/api/v2/oauth"
scope = "GIGACHAT_API_B2B"
api_key_env = "GIGACHAT_CREDENTIALS"
models = ["GigaChat-2-Max", "GigaChat-Retired", "Embeddings"]
[providers.prices."GigaChat-2-Max"]
input = "1.95"
output = "1.95"
currency = "RUB"

[[providers]]
name = "yandex"
kind = "yandexgpt"
base_url = "{yc}"
folder_id = "{yandexgpt.DEFAULT_FOLDER}"
api_key_env = "YANDEX_API_KEY"
models = ["yandexgpt-lite"]

[[providers]]
name = "local"
kind = "openai"
base_url = "{oa}/v1"
api_key_env = "EMULATOR_API_KEY"
[providers.model_info."gpt-4o-mini"]
context_window = 4096

[aliases]
smart = ["gigachat/GigaChat-2-Max", "local/gpt-4o-mini"]
"""


@pytest.fixture
def config_text(
    emulators: tuple[RunningServer, RunningServer, RunningServer],
    home: Path,
    db_file: str,
    test_engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    giga, yc, oa = emulators
    monkeypatch.setenv("GIGACHAT_CREDENTIALS", gigachat.DEFAULT_CREDENTIALS)
    monkeypatch.setenv("YANDEX_API_KEY", yandexgpt.DEFAULT_API_KEY)
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)
    text = _config(giga.url, yc.url, oa.url, db_file)
    (home / "config.toml").write_text(text, encoding="utf-8")
    return text


@pytest.fixture
def catalog_settings(config_text: str, home: Path) -> Settings:
    return Settings(home=home, **tomllib.loads(config_text))


@pytest.fixture
def gateway(catalog_settings: Settings) -> Iterator[RunningServer]:
    from llmgw.server import create_app

    with serve_in_thread(create_app(catalog_settings)) as server:
        catalog = gateway_of(server.app).catalog
        deadline = time.monotonic() + 10
        while catalog.refreshed_at is None:
            assert time.monotonic() < deadline, "the first catalog refresh never finished"
            time.sleep(0.02)
        yield server


@pytest.fixture
def local_admin(test_engine: Any) -> LocalAdmin:
    return LocalAdmin(test_engine, Actor.local())


def _by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in answer["data"]}


def test_api_models_shows_what_each_provider_offers_with_flags(
    gateway: RunningServer, make_key: Callable[..., Any]
) -> None:
    auth = {"Authorization": f"Bearer {make_key('any').secret}"}
    r = httpx.get(f"{gateway.url}/api/models", headers=auth, timeout=10)
    assert r.status_code == 200
    answer = r.json()
    models = _by_id(answer)

    max_ = models["gigachat/GigaChat-2-Max"]  # listed by GigaChat's GET /models
    assert (max_["listed"], max_["missing"], max_["type"]) == (True, False, "chat")
    assert max_["context_window"] == 131072
    assert max_["capabilities"]["tools"] is True and max_["capabilities"]["vision"] is True
    assert max_["price"] == {
        "input": "1.95",
        "output": "1.95",
        "currency": "RUB",
        "per": "1M tokens",
        "source": "config",
    }
    retired = models["gigachat/GigaChat-Retired"]  # configured, but GigaChat does not list it
    assert (retired["listed"], retired["missing"]) == (False, True)
    assert models["gigachat/Embeddings"]["type"] == "embeddings"  # GigaChat's type: embedder

    lite = models["yandex/yandexgpt-lite"]  # YandexGPT's native API lists nothing
    assert (lite["listed"], lite["missing"]) == (None, False)
    assert lite["versions"] == ["latest", "rc", "deprecated"] and lite["context_window"] == 32000

    mini = models["local/gpt-4o-mini"]  # no models list: what the OpenAI emulator lists
    assert mini["context_window"] == 4096  # [providers.model_info] wins over the built-in 128000
    assert mini["configured"] is False and mini["listed"] is True
    assert models["local/text-embedding-3-small"]["capabilities"]["embeddings"] is True
    assert models["smart"]["alias"] and models["smart"]["targets"] == [
        "gigachat/GigaChat-2-Max",
        "local/gpt-4o-mini",
    ]

    providers = {p["provider"]: p for p in answer["providers"]}
    assert providers["gigachat"]["missing"] == ["GigaChat-Retired"]
    assert providers["gigachat"]["source"] == "upstream" and not providers["gigachat"]["stale"]
    assert providers["yandex"]["source"] == "catalogue"
    assert answer["ttl_seconds"] == 300.0

    # /v1/models keeps its OpenAI shape and still routes the flagged model (the upstream decides)
    v1 = httpx.get(f"{gateway.url}/v1/models", headers=auth, timeout=10).json()
    ids = [m["id"] for m in v1["data"]]
    assert "gigachat/GigaChat-Retired" in ids and "local/gpt-4o-mini" in ids
    assert set(v1["data"][0]) == {"id", "object", "created", "owned_by"}


def test_a_key_sees_only_the_models_of_its_allow_list_in_api_models(  # IN-7
    gateway: RunningServer, make_key: Callable[..., Any]
) -> None:
    key = make_key("narrow", models=["local/*"])
    r = httpx.get(
        f"{gateway.url}/api/models", headers={"Authorization": f"Bearer {key.secret}"}, timeout=10
    )
    assert r.status_code == 200
    assert {m["provider"] for m in r.json()["data"]} == {"local"}
    assert [p["provider"] for p in r.json()["providers"]] == ["local"]
    assert "GigaChat" not in r.text and "yandex" not in r.text


def test_refresh_is_admin_only_and_picks_up_a_new_upstream_model(  # API5, AUTH-6
    gateway: RunningServer,
    emulators: tuple[RunningServer, RunningServer, RunningServer],
    make_key: Callable[..., Any],
    local_admin: LocalAdmin,
) -> None:
    _, _, oa = emulators
    plain = {"Authorization": f"Bearer {make_key('plain').secret}"}
    r = httpx.get(f"{gateway.url}/admin/v1/models?refresh=true", headers=plain, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"

    local_admin.users_create("root@example.com", role="admin")
    admin = {
        "Authorization": "Bearer " + local_admin.keys_create("root", user="root@example.com")["key"]
    }
    bad = httpx.get(f"{gateway.url}/admin/v1/models?refresh=yes", headers=admin, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "refresh"

    oa.app.state.emulator.models = ("gpt-4o-mini", "gpt-new")  # the upstream starts offering one
    before = oa.app.state.stats.listings
    cached = httpx.get(f"{gateway.url}/admin/v1/models", headers=admin, timeout=10).json()
    assert "local/gpt-new" not in _by_id(cached)  # the cache, until its TTL or a refresh
    assert oa.app.state.stats.listings == before
    fresh = httpx.get(f"{gateway.url}/admin/v1/models?refresh=true", headers=admin, timeout=10)
    assert fresh.status_code == 200 and oa.app.state.stats.listings > before
    assert "local/gpt-new" in _by_id(fresh.json())
    assert "local/text-embedding-3-small" not in _by_id(fresh.json())  # no longer listed
    v1 = httpx.get(f"{gateway.url}/v1/models", headers=plain, timeout=10).json()
    assert "local/gpt-new" in [m["id"] for m in v1["data"]]


def test_providers_models_cli_locally_and_against_the_server(
    gateway: RunningServer,
    cli: Callable[..., Any],
    local_admin: LocalAdmin,
) -> None:
    res = cli("providers", "models", "--json")
    assert res.exit_code == 0, res.stderr
    local = json.loads(res.stdout)
    assert _by_id(local)["gigachat/GigaChat-Retired"]["missing"] is True
    assert _by_id(local)["gigachat/GigaChat-2-Max"]["listed"] is True

    table = cli("providers", "models", "--provider", "gigachat")
    assert table.exit_code == 0, table.stderr
    assert (
        "MISSING upstream" in table.stdout and "no longer listed: GigaChat-Retired" in table.stdout
    )
    assert "local/" not in table.stdout

    unknown = cli("providers", "models", "--provider", "nope")
    assert unknown.exit_code != 0 and unknown.stderr.startswith("Error: no provider named 'nope'")

    local_admin.users_create("root@example.com", role="admin")
    token = str(local_admin.keys_create("root", user="root@example.com")["key"])
    remote = cli(
        "--url", gateway.url, "--token", token, "providers", "models", "--refresh", "--json"
    )
    assert remote.exit_code == 0, remote.stderr
    assert _by_id(json.loads(remote.stdout)).keys() == _by_id(local).keys()
    assert token not in remote.stdout + remote.stderr


async def test_the_dashboards_chat_picker_offers_the_catalogs_chat_models(
    gateway: RunningServer, make_key: Callable[..., Any]
) -> None:
    """The Chat screen's model picker (``RemoteChat.models``) is fed by the catalog: chat models
    and aliases, not the embedding models ``/v1/models`` also lists."""
    from llmgw.admin.chat_remote import RemoteChat

    chat = RemoteChat(gateway.url, make_key("tui").secret)
    try:
        models = await chat.models()
    finally:
        await chat.aclose()
    assert "gigachat/GigaChat-2-Max" in models and "smart" in models
    assert "local/gpt-4o-mini" in models and "yandex/yandexgpt-lite" in models
    assert "gigachat/Embeddings" not in models and "local/text-embedding-3-small" not in models
