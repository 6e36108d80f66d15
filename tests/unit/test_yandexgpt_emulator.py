"""The YandexGPT emulator, spoken to with raw httpx the way the reference documents the real API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from llmgw.emulators import yandexgpt as emulator
from llmgw.emulators.runner import serve_in_thread

FOLDER = emulator.DEFAULT_FOLDER
API_KEY = {"Authorization": f"Api-Key {emulator.DEFAULT_API_KEY}"}


@pytest.fixture(scope="module")
def sa_key() -> dict[str, str]:
    return emulator.make_service_account_key()


@pytest.fixture
def server(sa_key: dict[str, str]) -> Iterator[tuple[str, emulator.YandexGPTEmulator]]:
    app = emulator.create_app(service_account_keys=[sa_key])
    with serve_in_thread(app) as srv:
        yield srv.url.rstrip("/"), app.state.emulator


def completion(model: str, text: str, **opts: Any) -> dict[str, Any]:
    return {
        "modelUri": f"gpt://{FOLDER}/{model}",
        "completionOptions": {"stream": False, "temperature": 0.3, "maxTokens": "500", **opts},
        "messages": [{"role": "system", "text": "Answer briefly."}, {"role": "user", "text": text}],
    }


def signed_jwt(key: dict[str, str], *, lifetime: int = 3600, alg: str = "PS256") -> str:
    now = int(time.time())
    claims = {
        "iss": key["service_account_id"],
        "aud": emulator.IAM_AUDIENCE,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, key["private_key"], algorithm=alg, headers={"kid": key["id"]})


def test_sync_completion_has_result_wrapper_string_counts_and_branch_versions(server: Any) -> None:
    url, _ = server
    r = httpx.post(
        f"{url}/foundationModels/v1/completion",
        headers=API_KEY,
        json=completion("yandexgpt-lite", "hi"),
    )
    assert r.status_code == 200
    result = r.json()["result"]
    alt = result["alternatives"][0]
    assert alt == {
        "message": {"role": "assistant", "text": "yandexgpt-lite/latest reply to: hi"},
        "status": "ALTERNATIVE_STATUS_FINAL",
    }
    usage = result["usage"]
    assert all(
        isinstance(usage[k], str) for k in ("inputTextTokens", "completionTokens", "totalTokens")
    )
    assert int(usage["totalTokens"]) == int(usage["inputTextTokens"]) + int(
        usage["completionTokens"]
    )
    versions = {}
    for branch in ("latest", "rc", "deprecated"):
        body = completion(f"yandexgpt-lite/{branch}", "hi")
        versions[branch] = httpx.post(
            f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body
        ).json()["result"]["modelVersion"]
    assert len(set(versions.values())) == 3
    assert result["modelVersion"] == versions["latest"]  # no branch means latest


def test_stream_repeats_the_whole_text_so_far(server: Any) -> None:
    url, _ = server
    body = completion("yandexgpt", "one two three four five six", stream=True)
    with httpx.stream(
        "POST", f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body
    ) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    texts = [c["result"]["alternatives"][0]["message"]["text"] for c in lines]
    statuses = [c["result"]["alternatives"][0]["status"] for c in lines]
    assert len(lines) > 3
    assert all(b.startswith(a) and len(b) >= len(a) for a, b in zip(texts, texts[1:], strict=False))
    assert statuses[:-1] == ["ALTERNATIVE_STATUS_PARTIAL"] * (len(lines) - 1)
    assert statuses[-1] == "ALTERNATIVE_STATUS_FINAL"
    assert texts[-1] == "yandexgpt/latest reply to: one two three four five six"
    assert all("usage" in c["result"] for c in lines)


def test_stream_can_rewrite_earlier_text_and_end_with_a_content_filter(server: Any) -> None:
    url, _ = server
    body = completion("yandexgpt", "tell me [[rewrite]] a b c d e f g", stream=True)
    with httpx.stream(
        "POST", f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body
    ) as r:
        texts = [
            json.loads(x)["result"]["alternatives"][0]["message"]["text"]
            for x in r.iter_lines()
            if x
        ]
    assert any(
        not b.startswith(a) for a, b in zip(texts, texts[1:], strict=False)
    )  # a prefix changed
    assert texts[-1].startswith("Revised")

    body = completion("yandexgpt", "[[content_filter]] something bad here and more", stream=True)
    with httpx.stream(
        "POST", f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body
    ) as r:
        last = [json.loads(x) for x in r.iter_lines() if x][-1]["result"]["alternatives"][0]
    assert last["status"] == "ALTERNATIVE_STATUS_CONTENT_FILTER"
    assert last["message"]["text"] == emulator.FILTERED_TEXT


def test_tool_calls_carry_object_arguments_and_results_go_back_by_name(server: Any) -> None:
    url, _ = server
    body = completion("yandexgpt", "weather in Moscow?")
    body["tools"] = [
        {
            "function": {
                "name": "get_weather",
                "description": "w",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        }
    ]
    alt = httpx.post(f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body).json()[
        "result"
    ]["alternatives"][0]
    assert alt["status"] == "ALTERNATIVE_STATUS_TOOL_CALLS"
    call = alt["message"]["toolCallList"]["toolCalls"][0]["functionCall"]
    assert call == {"name": "get_weather", "arguments": {"city": "Moscow"}}
    body["messages"] += [
        {"role": "assistant", "toolCallList": alt["message"]["toolCallList"]},
        {
            "role": "user",
            "toolResultList": {
                "toolResults": [{"functionResult": {"name": "get_weather", "content": "-5"}}]
            },
        },
    ]
    alt = httpx.post(f"{url}/foundationModels/v1/completion", headers=API_KEY, json=body).json()[
        "result"
    ]["alternatives"][0]
    assert alt["message"]["text"] == "Results: get_weather -> -5"


def test_text_embedding_doc_and_query_models(server: Any) -> None:
    url, _ = server
    out = {}
    for model in ("text-search-doc", "text-search-query"):
        r = httpx.post(
            f"{url}/foundationModels/v1/textEmbedding",
            headers=API_KEY,
            json={"modelUri": f"emb://{FOLDER}/{model}/latest", "text": "hello"},
        )
        assert r.status_code == 200
        out[model] = r.json()
        assert len(out[model]["embedding"]) == 256
        assert isinstance(out[model]["numTokens"], str)
    assert out["text-search-doc"]["embedding"] != out["text-search-query"]["embedding"]


def test_iam_exchange_verifies_a_ps256_jwt(server: Any, sa_key: dict[str, str]) -> None:
    url, emu = server
    r = httpx.post(f"{url}/iam/v1/tokens", json={"jwt": signed_jwt(sa_key)})
    assert r.status_code == 200
    token = r.json()["iamToken"]
    assert token.startswith("t1.") and r.json()["expiresAt"].endswith("Z")
    bearer = {"Authorization": f"Bearer {token}", "x-folder-id": FOLDER}
    ok = httpx.post(
        f"{url}/foundationModels/v1/completion",
        headers=bearer,
        json=completion("yandexgpt-lite", "hi"),
    )
    assert ok.status_code == 200
    # Too long a lifetime, the wrong algorithm, a key the server does not know: all refused.
    assert (
        httpx.post(
            f"{url}/iam/v1/tokens", json={"jwt": signed_jwt(sa_key, lifetime=7200)}
        ).status_code
        == 400
    )
    assert (
        httpx.post(
            f"{url}/iam/v1/tokens", json={"jwt": signed_jwt(sa_key, alg="RS256")}
        ).status_code
        == 400
    )
    stranger = emulator.make_service_account_key()
    assert httpx.post(f"{url}/iam/v1/tokens", json={"jwt": signed_jwt(stranger)}).status_code == 401
    emu.expire_tokens()
    r = httpx.post(
        f"{url}/foundationModels/v1/completion",
        headers=bearer,
        json=completion("yandexgpt-lite", "hi"),
    )
    assert r.status_code == 401 and r.json()["error"]["grpcCode"] == 16
    assert emu.iam_calls == 1


def test_errors_use_the_observed_envelope(server: Any) -> None:
    url, emu = server

    def post(body: dict[str, Any], headers: dict[str, str] = API_KEY) -> httpx.Response:
        return httpx.post(f"{url}/foundationModels/v1/completion", headers=headers, json=body)

    r = post(completion("yandexgpt", "hi"), {"Authorization": "Api-Key wrong"})
    assert r.status_code == 401
    assert r.json()["error"] == {
        "grpcCode": 16,
        "httpCode": 401,
        "message": "Unknown api key",
        "httpStatus": "Unauthorized",
        "details": [],
    }
    assert "wrong" not in r.text
    assert (
        post(completion("yandexgpt", "hi"), {}).json()["error"]["message"]
        == "IAM token or API key has to be passed in request"
    )
    bad_uri = completion("yandexgpt", "hi") | {"modelUri": "yandexgpt"}
    assert post(bad_uri).json()["error"]["message"] == "Failed to parse model URI"
    assert post(completion("yandexgpt", "hi", temperature=1.5)).status_code == 400
    headers = API_KEY | {"x-folder-id": "b1gotherfolder"}
    assert (
        post(completion("yandexgpt", "hi"), headers)
        .json()["error"]["message"]
        .startswith("Specified folder ID")
    )
    user_token = emu.add_user_iam_token(FOLDER)
    r = post(completion("yandexgpt", "hi"), {"Authorization": f"Bearer {user_token}"})
    assert r.json()["error"]["message"] == "You have to specify folder ID for user account"


async def test_concurrency_gauge_answers_429_quota() -> None:
    app = emulator.create_app(max_concurrency=1, latency_ms=400)
    with serve_in_thread(app) as srv:
        url = srv.url + "/foundationModels/v1/completion"
        async with httpx.AsyncClient(timeout=10) as c:
            calls = [
                c.post(url, headers=API_KEY, json=completion("yandexgpt", "x")) for _ in range(3)
            ]
            responses = await asyncio.gather(*calls)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 429, 429]
    err = next(r for r in responses if r.status_code == 429).json()["error"]
    assert err["grpcCode"] == 8 and err["httpStatus"] == "Too Many Requests"
    assert (
        err["message"]
        == "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: allowed 1 requests"
    )
