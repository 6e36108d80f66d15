"""A YandexGPT provider with ``models = []`` passes client model names through; a client-written
``gpt://``/``emb://`` URI must name the configured folder (or one in ``allowed_folders``), or the
gateway's credentials would be spent in a folder the operator never configured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from llmgw.config import Settings
from llmgw.emulators import gigachat, yandexgpt
from llmgw.emulators.runner import RunningServer, serve_in_thread
from llmgw.server import create_app

FOLDER = yandexgpt.DEFAULT_FOLDER
OTHER = "b1gsomeoneelsesfolder"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstreams() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        serve_in_thread(gigachat.create_app()) as giga,
        serve_in_thread(yandexgpt.create_app()) as yc,
    ):
        yield giga, yc


def _gateway(
    upstreams: tuple[RunningServer, RunningServer],
    ru_settings: Callable[..., Settings],
    **yandex: Any,
) -> RunningServer:
    giga, yc = upstreams
    return serve_in_thread(
        create_app(ru_settings(giga.url, yc.url, yandex={"models": [], **yandex}))
    )


def _sent(yc: RunningServer) -> list[str]:
    return [r.get("modelUri", "") for r in yc.app.state.emulator.requests]


def test_other_folder_uri_is_refused_before_the_upstream(
    upstreams: tuple[RunningServer, RunningServer],
    ru_settings: Callable[..., Settings],
    make_key: Callable[..., Any],
) -> None:
    auth = {"Authorization": f"Bearer {make_key('yc').secret}"}
    with (
        _gateway(upstreams, ru_settings) as gw,
        httpx.Client(base_url=gw.url, headers=auth, timeout=20) as c,
    ):
        for model in (
            f"yandex/gpt://{OTHER}/yandexgpt-lite/latest",
            f"yandex/gpt://{OTHER}/yandexgpt-lite/latest:rc",  # the version split kept the URI
            f"yandex/emb://{FOLDER}/yandexgpt-lite/latest",  # wrong scheme for chat
        ):
            r = c.post("/v1/chat/completions", json={"model": model, "messages": MSG})
            assert r.status_code == 403, r.text
            err = r.json()["error"]
            assert (err["code"], err["param"]) == ("folder_not_allowed", "model")
        r = c.post(
            "/v1/embeddings",
            json={"model": f"yandex/emb://{OTHER}/text-search-doc/latest", "input": "x"},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "folder_not_allowed"
        assert _sent(upstreams[1]) == []
        # The configured folder's own URI, and plain names, still go through.
        own = f"gpt://{FOLDER}/yandexgpt-lite/latest"
        r = c.post("/v1/chat/completions", json={"model": f"yandex/{own}", "messages": MSG})
        assert r.status_code == 200, r.text
        r = c.post("/v1/chat/completions", json={"model": "yandex/yandexgpt-lite", "messages": MSG})
        assert r.status_code == 200, r.text
        assert _sent(upstreams[1]) == [own, own]


def test_allowed_folders_lets_an_operator_open_another_folder(
    upstreams: tuple[RunningServer, RunningServer],
    ru_settings: Callable[..., Settings],
    make_key: Callable[..., Any],
) -> None:
    auth = {"Authorization": f"Bearer {make_key('yc').secret}"}
    uri = f"gpt://{OTHER}/yandexgpt-lite/latest"
    with (
        _gateway(upstreams, ru_settings, allowed_folders=[OTHER]) as gw,
        httpx.Client(base_url=gw.url, headers=auth, timeout=20) as c,
    ):
        c.post("/v1/chat/completions", json={"model": f"yandex/{uri}", "messages": MSG})
        assert set(_sent(upstreams[1])) == {uri}  # sent (the emulator may refuse the folder)
