"""GigaChat over TLS with a private root CA: refused without ``ca_bundle``, working with it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmgw.config import ProviderConfig
from llmgw.emulators import gigachat as emulator
from llmgw.errors import UpstreamError
from llmgw.providers.base import CallContext
from llmgw.providers.gigachat import GigaChatProvider
from llmgw.schemas import ChatRequest


@pytest.fixture
def tls_server(tls_upstream: Callable[[Any], tuple[str, Path]]) -> tuple[str, Path]:
    return tls_upstream(emulator.create_app(max_concurrency=10))


def _provider(url: str, ca: Path | None) -> GigaChatProvider:
    config = ProviderConfig(
        name="giga",
        kind="gigachat",
        base_url=f"{url}/api/v1",
        auth_url=f"{url}/api/v2/oauth",
        ca_bundle=ca,
    )
    return GigaChatProvider(config, emulator.DEFAULT_CREDENTIALS)


REQ = ChatRequest.model_validate(
    {"model": "GigaChat-2", "messages": [{"role": "user", "content": "hi"}]}
)
CTX = CallContext(request_id="r1", model="GigaChat-2")


async def test_unknown_root_ca_is_refused_with_a_ca_bundle_hint(
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    p = _provider(url, None)
    try:
        with pytest.raises(UpstreamError, match="could not be verified") as info:
            await p.chat(REQ, CTX)
        with pytest.raises(UpstreamError):  # the API host is verified too (aiohttp side)
            await p.transport.get_json("/models")
    finally:
        await p.aclose()
    assert "ca_bundle" in (info.value.hint or "")


async def test_ca_bundle_makes_both_hosts_verify(tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    p = _provider(url, ca)
    try:
        out = await p.chat(REQ, CTX)
        chunks = [c async for c in p.chat_stream(REQ.model_copy(update={"stream": True}), CTX)]
    finally:
        await p.aclose()
    assert out.body["choices"][0]["message"]["content"] == "GigaChat emulator reply to: hi"
    assert chunks[-1].usage is not None
