"""GigaChat emulator answers: the model list, request validation and deterministic replies."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from llmgw.emulators.faults import json_response

__all__ = [
    "EMBED_DIM",
    "MODELS",
    "api_error",
    "completion",
    "model_card",
    "sse",
    "split_reply",
    "tokens_of",
    "validate_chat",
    "vector",
]


CHAT_MODELS = (
    "GigaChat", "GigaChat-2", "GigaChat-2-Pro", "GigaChat-2-Max", "GigaChat-2-preview",
    "GigaChat-Pro", "GigaChat-Max", "GigaChat-Plus", "GigaChat-3-Ultra",
)  # fmt: skip
EMBEDDERS = ("Embeddings", "Embeddings-2", "EmbeddingsGigaR")
MODELS: dict[str, str] = {m: "chat" for m in CHAT_MODELS} | {m: "embedder" for m in EMBEDDERS}
VERSIONS = {"GigaChat-3-Ultra": "32.3.18.5"}
PAID_ONLY = {"GigaChat-Plus"}  # answers 402 for personal (PERS) accounts
EMBED_DIM = 1024


def tokens_of(text: str) -> int:
    """The emulator's token count: about four characters per token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def api_error(status: int, message: str) -> Response:
    """GigaChat's ``{"status", "message"}`` error answer."""
    return json_response({"status": status, "message": message}, status)


def sse(obj: dict[str, Any]) -> bytes:
    """One SSE event in GigaChat's framing (``data: {json}`` and a blank line)."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def split_reply(text: str) -> list[str]:
    """Multi-token stream pieces: about three words each, as the real server batches them."""
    words = text.split(" ")
    return [
        " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
        for i in range(0, len(words), 3)
    ]


def vector(text: str, dim: int) -> list[float]:
    """A deterministic fake embedding of ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)  # noqa: S311 - deterministic fake vectors
    return [round(rng.uniform(-1, 1), 6) for _ in range(dim)]


def model_card(name: str) -> dict[str, Any]:
    """One ``/models`` entry."""
    return {"id": name, "object": "model", "owned_by": "salutedevices", "type": MODELS[name]}


def validate_chat(body: Mapping[str, Any], scope: str) -> Response | None:
    model = body.get("model")
    if not isinstance(model, str) or MODELS.get(model) != "chat":
        return api_error(404, "No such model")
    if model in PAID_ONLY and scope == "GIGACHAT_API_PERS":
        return api_error(402, "Payment Required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return api_error(422, "Invalid params: messages must not be empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in (
            "system",
            "user",
            "assistant",
            "function",
        ):
            return api_error(422, "Invalid params: unknown message role")
        if m["role"] == "system" and i != 0:
            return api_error(422, "Invalid params: system message must be the first message")
        if not isinstance(m.get("content", ""), str):
            return api_error(422, "Invalid params: content must be a string")
        if m["role"] == "function":
            try:
                ok = isinstance(json.loads(m.get("content") or ""), dict)
            except ValueError:
                ok = False
            if not ok:
                return api_error(
                    422,
                    f"INVALID_PARAMS: invalid function result for function json string {m.get('name')}",
                )
        fc = m.get("function_call")
        if fc is not None and not (
            isinstance(fc, dict) and isinstance(fc.get("arguments", {}), dict)
        ):
            return api_error(422, "Invalid params: function_call.arguments must be an object")
    temp = body.get("temperature")
    if temp is not None and (not isinstance(temp, int | float) or temp <= 0):
        return api_error(422, "Invalid params: temperature must be in range (0, +inf)")
    rp = body.get("repetition_penalty")
    if rp is not None and (not isinstance(rp, int | float) or rp <= 0):
        return api_error(422, "Invalid params: repetition_penalty must be in range (0, +inf)")
    functions = body.get("functions") or []
    fcall = body.get("function_call")
    if isinstance(fcall, dict) and fcall.get("name") not in {f.get("name") for f in functions}:
        return api_error(422, "Invalid params: function_call name is not in functions")
    return None


def fake_args(schema: Any) -> dict[str, Any]:
    """Arguments for a called function, from its JSON schema's required properties."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    out: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        out[name] = {"integer": 3, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
            str(kind), "Москва"
        )
    return out


def completion(body: Mapping[str, Any]) -> dict[str, Any]:
    model = str(body["model"])
    messages = body["messages"]
    prompt = sum(tokens_of(str(m.get("content") or "")) for m in messages) + 3 * len(messages)
    last = messages[-1]
    functions = body.get("functions") or []
    fcall = body.get("function_call", "auto")
    message: dict[str, Any] = {"role": "assistant"}
    finish = "stop"
    if functions and fcall != "none" and last.get("role") != "function":
        fn = functions[0]
        if isinstance(fcall, dict):
            fn = next(f for f in functions if f.get("name") == fcall["name"])
        message.update(
            content="",
            function_call={"name": fn["name"], "arguments": fake_args(fn.get("parameters"))},
            functions_state_id=str(uuid.uuid4()),
        )
        finish = "function_call"
        completion = 12
    else:
        if last.get("role") == "function":
            text = f"Function {last.get('name')} returned {last.get('content')}."
        else:
            user = str(last.get("content") or "")
            text = f"GigaChat emulator reply to: {user}"
            if "[[blacklist]]" in user:
                text, finish = (
                    "Не люблю менять тему разговора, но вот сейчас тот самый случай.",
                    "blacklist",
                )
            elif "[[error]]" in user:
                finish = "error"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit > 0 and tokens_of(text) > limit:
            text, finish = text[: limit * 4], "length"
        message["content"] = text
        completion = tokens_of(text)
    return {
        "choices": [{"message": message, "index": 0, "finish_reason": finish}],
        "created": int(time.time()),
        "model": f"{model}:{VERSIONS.get(model, '2.0.28.2')}",
        "object": "chat.completion",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion, "precached_prompt_tokens": 0},
    }  # fmt: skip
