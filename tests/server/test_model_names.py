"""Model names outside ``[provider/]model[:version]`` and non-boolean flags: 400 before any upstream
call (security catalogue IN-3: control characters and oversized values are refused, never
forwarded)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from llmgw.config import Settings
from llmgw.emulators.runner import serve_in_thread
from llmgw.server import create_app
from llmgw.server.app import gateway_of

MSG = [{"role": "user", "content": "hi"}]

BAD_NAMES = [
    "openai/gpt-4o-mini:версия",  # non-Latin-1: gave a 500 after the upstream call
    "openai/gpt-4o-mini:café",  # Latin-1 but not ASCII
    "openai/gpt-4o-mini:v\x00",  # NUL, CR, LF in the version: dropped the connection
    "openai/gpt-4o-mini:v\r\nx-injected: 1",
    "openai/gpt-4o-mini:v\n",
    "openai/gpt 4o mini",
    "openai/" + "m" * 201,  # the model column is varchar(200)
    "openai/gpt-4o-mini:" + "v" * 65,  # the version column is varchar(64)
    "x" * 400,
    "",
]


@pytest.fixture
def passthrough(
    make_settings: Callable[..., Settings], emulator: Any, test_engine: Any
) -> Iterator[str]:
    """A real gateway whose provider has ``models = []``: client names go to the upstream as-is.

    Returns once the gateway's first model-list refresh (one upstream ``GET /v1/models``) is
    done, after which ``emulator.app.state.stats.requests`` counts only the calls under test."""
    app = create_app(make_settings(emulator.url, provider={"models": []}))
    server = serve_in_thread(app)
    deadline = time.monotonic() + 10
    while gateway_of(app).catalog.refreshed_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    emulator.app.state.stats.requests = 0
    yield server.url
    server.stop()


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_in3_bad_model_names_are_400_and_never_reach_the_upstream(
    passthrough: str, auth: dict[str, str], emulator: Any, name: str
) -> None:
    """IN-3: long, non-Latin-1 and control-character names are refused with ``invalid_model``."""
    with httpx.Client(base_url=passthrough, headers=auth, timeout=10) as c:
        r = c.post("/v1/chat/completions", json={"model": name, "messages": MSG})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert (err["code"], err["param"], err["type"]) == (
            "invalid_model",
            "model",
            "invalid_request_error",
        )
        assert "x-injected" not in r.headers
        r = c.post("/v1/embeddings", json={"model": name, "input": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_model", r.text
    assert emulator.app.state.stats.requests == 0


def test_names_within_the_grammar_still_route(
    passthrough: str, auth: dict[str, str], emulator: Any
) -> None:
    """The longest model (200) and version (64) pass; a URI-like name is one model, not a version."""
    with httpx.Client(base_url=passthrough, headers=auth, timeout=10) as c:
        ok = c.post("/v1/chat/completions", json={"model": "openai/gpt-4o-mini", "messages": MSG})
        assert ok.status_code == 200, ok.text
        for name, status in (
            ("openai/" + "m" * 200, 404),  # the emulator's 404 for a model it does not have
            ("openai/gpt-4o-mini:" + "v" * 64, 200),
            ("openai/gpt://b1gfolder/yandexgpt-lite/latest", 404),
        ):
            r = c.post("/v1/chat/completions", json={"model": name, "messages": MSG})
            assert r.status_code == status, r.text
    assert emulator.app.state.stats.requests >= 4  # they were all sent


@pytest.mark.parametrize(
    "extra",
    [
        {"stream": "yes"},
        {"stream": 1},
        {"stream": "true"},
        {"logprobs": "no"},
        {"stream": True, "stream_options": {"include_usage": "yes"}},
    ],
    ids=["stream-yes", "stream-1", "stream-string-true", "logprobs-no", "include-usage-yes"],
)
async def test_booleans_are_strict(
    client: httpx.AsyncClient, auth: dict[str, str], emulator: Any, extra: dict[str, Any]
) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": MSG, **extra}
    r = await client.post("/v1/chat/completions", json=body, headers=auth)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_value" and err["param"].split(".")[0] in extra
    assert emulator.app.state.stats.requests == 0
