"""The issue's fallback scenario end to end: the ``openai`` package -> llmgw on uvicorn -> a failing
GigaChat emulator and a healthy YandexGPT emulator behind one alias.

Requests to the alias succeed on YandexGPT (JSON and streaming), GigaChat's breaker opens after its
threshold and then no request reaches GigaChat, and after the cooldown a probe finds GigaChat
healthy again and the circuit closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from llmgw.config import Settings
from llmgw.emulators import gigachat, yandexgpt
from llmgw.emulators.runner import RunningServer, serve_in_thread

COOLDOWN = 2.0  # on the fake clock: only the test moves time
MSG: list[Any] = [{"role": "user", "content": "привет"}]


@pytest.fixture
def upstreams() -> Iterator[tuple[RunningServer, RunningServer]]:
    with (
        serve_in_thread(gigachat.create_app(max_concurrency=10, hang_seconds=3.0)) as giga,
        serve_in_thread(yandexgpt.create_app()) as yc,
    ):
        yield giga, yc


@pytest.fixture
def gateway(
    upstreams: tuple[RunningServer, RunningServer],
    ru_settings: Callable[..., Settings],
    fake_clock: Any,
) -> Iterator[RunningServer]:
    """The gateway on a fake clock: the test moves time past the breaker's cooldown."""
    from llmgw.server import create_app

    giga, yc = upstreams
    settings = ru_settings(
        giga.url,
        yc.url,
        giga={"models": ["GigaChat-2"], "first_byte_timeout": 0.5},
        yandex={"models": ["yandexgpt-lite"]},
        routing={"failure_threshold": 3, "cooldown": COOLDOWN, "max_retries": 0},
        aliases={"smart": ["gigachat/GigaChat-2", "yandex/yandexgpt-lite"]},
    )
    with serve_in_thread(create_app(settings, clock=fake_clock)) as server:
        yield server


@pytest.fixture
def key(make_key: Callable[..., Any]) -> Any:
    return make_key("fallback-e2e")


@pytest.fixture
def oa(gateway: RunningServer, key: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=key.secret, max_retries=0, timeout=20
    )


def served_by(oa: openai.OpenAI, *, stream: bool = False) -> tuple[str, str]:
    """(x-llmgw-served-by, the answer's text) of one request to the alias."""
    if stream:
        with oa.chat.completions.with_streaming_response.create(
            model="smart", messages=MSG, stream=True
        ) as resp:
            header = resp.headers["x-llmgw-served-by"]
            chunks = resp.parse()
            assert isinstance(chunks, openai.Stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return header, text
    raw = oa.chat.completions.with_raw_response.create(model="smart", messages=MSG)
    return raw.headers["x-llmgw-served-by"], raw.parse().choices[0].message.content or ""


def status_of(gateway: RunningServer, key: Any, provider: str) -> dict[str, Any]:
    r = httpx.get(
        f"{gateway.url}/api/providers",
        headers={"Authorization": f"Bearer {key.secret}"},
        timeout=10,
    )
    assert r.status_code == 200
    rows = [x for x in r.json()["data"] if x["provider"] == provider]
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


@pytest.mark.parametrize("fault", ["500", "timeout", "429"])
def test_gigachat_failing_alias_served_by_yandexgpt_breaker_opens_fails_fast_and_closes(
    upstreams: tuple[RunningServer, RunningServer],
    gateway: RunningServer,
    oa: openai.OpenAI,
    key: Any,
    fault: str,
    fake_clock: Any,
) -> None:
    giga, yc = upstreams
    gem = giga.app.state.emulator
    gem.fault = fault

    for i in range(3):  # up to the threshold: GigaChat is tried, fails, YandexGPT answers
        header, text = served_by(oa, stream=i == 1)
        assert header == "yandex/yandexgpt-lite"
        assert "yandexgpt-lite" in text
    assert gem.api_calls == 3
    assert status_of(gateway, key, "gigachat")["breaker"] == "open"

    for i in range(6):  # open: fail fast, GigaChat sees nothing, every request succeeds
        header, _ = served_by(oa, stream=i % 2 == 0)
        assert header == "yandex/yandexgpt-lite"
    assert gem.api_calls == 3

    gem.fault = None  # GigaChat recovers; after the cooldown one probe closes the circuit
    fake_clock.advance(COOLDOWN - 0.1)
    header, _ = served_by(oa)
    assert header == "yandex/yandexgpt-lite"  # still open just before the cooldown ends
    assert gem.api_calls == 3
    fake_clock.advance(0.2)
    header, text = served_by(oa)
    assert header == "gigachat/GigaChat-2"
    assert "GigaChat emulator reply" in text
    row = status_of(gateway, key, "gigachat")
    assert row["breaker"] == "closed" and row["failures"] == 3
    assert served_by(oa, stream=True)[0] == "gigachat/GigaChat-2"
    assert gem.api_calls == 5
