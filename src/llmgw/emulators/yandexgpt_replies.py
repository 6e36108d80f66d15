"""YandexGPT emulator answers: models and versions, validation, the error envelope and stream plans."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from llmgw.emulators.faults import json_response

__all__ = [
    "EMBED_DIM",
    "EMBED_MODELS",
    "FILTERED_TEXT",
    "MODEL_VERSIONS",
    "api_error",
    "count",
    "plan",
    "tokens_of",
    "validate",
]


# Model -> branch -> modelVersion: each branch answers with its own version date.
MODEL_VERSIONS: dict[str, dict[str, str]] = {
    "yandexgpt-lite": {"latest": "09.02.2025", "rc": "22.05.2025", "deprecated": "23.10.2024"},
    "yandexgpt": {"latest": "09.02.2025", "rc": "15.07.2025", "deprecated": "23.10.2024"},
    "llama-lite": {"latest": "25.07.2024", "rc": "25.07.2024", "deprecated": "25.07.2024"},
    "llama": {"latest": "06.12.2024", "rc": "06.12.2024", "deprecated": "06.12.2024"},
}
EMBED_MODELS = {"text-search-doc": "06.12.2023", "text-search-query": "06.12.2023"}
EMBED_DIM = 256
FILTERED_TEXT = "К сожалению, я не могу ничего сказать об этом. Давайте сменим тему?"
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error"}  # fmt: skip
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 429: 8, 500: 13}


def tokens_of(text: str) -> int:
    """The emulator's token count: about four characters per token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def api_error(status: int, message: str) -> Response:
    """The observed ``{"error": {grpcCode, httpCode, message, httpStatus, details}}`` answer."""
    body = {"grpcCode": _GRPC.get(status, 2), "httpCode": status, "message": message,
            "httpStatus": _REASONS.get(status, "Unknown"), "details": []}  # fmt: skip
    return json_response({"error": body}, status)


def count(value: Any) -> int | None:
    """An int64 field that may come as a number or a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def validate(body: Mapping[str, Any]) -> Response | None:
    opts = body.get("completionOptions") or {}
    temp = opts.get("temperature")
    if temp is not None and (not isinstance(temp, int | float) or not 0 <= temp <= 1):
        return api_error(400, "temperature must be in range [0, 1]")
    if "maxTokens" in opts:
        mt = count(opts["maxTokens"])
        if mt is None or mt <= 0:
            return api_error(400, "maxTokens must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return api_error(400, "messages must not be empty")
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "user", "assistant"):
            return api_error(
                400,
                f"Error in session internal_id={uuid.uuid4().hex}: invalid message role '{role}'",
            )
        if sum(k in m for k in ("text", "toolCallList", "toolResultList")) != 1:
            return api_error(
                400, "message must have exactly one of text, toolCallList, toolResultList"
            )
    return None


def usage(prompt: int, completion: int) -> dict[str, Any]:
    """``usage`` with int64 counts as strings."""
    return {"inputTextTokens": str(prompt), "completionTokens": str(completion),
            "totalTokens": str(prompt + completion), "completionTokensDetails": {"reasoningTokens": "0"}}  # fmt: skip


def plan(body: Mapping[str, Any], name: str, branch: str) -> list[dict[str, Any]]:
    """Every response chunk of this request; the last one is the complete (non-stream) answer."""
    version = MODEL_VERSIONS[name][branch]
    messages = body["messages"]
    prompt = sum(tokens_of(str(m.get("text") or json.dumps(m))) for m in messages) + 2 * len(
        messages
    )
    last = messages[-1]
    tools = body.get("tools") or []
    choice = body.get("toolChoice") or {}

    def res(message: dict[str, Any], status: str, completion: int) -> dict[str, Any]:
        alt = {
            "message": {"role": "assistant", **message},
            "status": f"ALTERNATIVE_STATUS_{status}",
        }
        return {"alternatives": [alt], "usage": usage(prompt, completion), "modelVersion": version}

    if tools and choice.get("mode") != "NONE" and "toolResultList" not in last:
        fns = [t["function"] for t in tools if isinstance(t, dict) and "function" in t]
        wanted = choice.get("functionName")
        fn = next((f for f in fns if f.get("name") == wanted), fns[0])
        args = {k: ("Moscow" if (v or {}).get("type") == "string" else 3)
                for k, v in ((fn.get("parameters") or {}).get("properties") or {}).items()}  # fmt: skip
        call = {"toolCalls": [{"functionCall": {"name": fn["name"], "arguments": args}}]}
        return [res({"toolCallList": call}, "TOOL_CALLS", 10)]
    if "toolResultList" in last:
        results = last["toolResultList"].get("toolResults", [])
        text = "Results: " + "; ".join(
            f"{r['functionResult']['name']} -> {r['functionResult'].get('content')}"
            for r in results
        )
    else:
        user = str(last.get("text") or "")
        text = f"{name}/{branch} reply to: {user}"
    words = text.split(" ")
    limit = count((body.get("completionOptions") or {}).get("maxTokens"))
    final_status = "FINAL"
    if limit is not None and tokens_of(text) > limit:
        words, final_status = text[: limit * 4].split(" "), "TRUNCATED_FINAL"
    chunks: list[dict[str, Any]] = []
    for i in range(1, len(words) + 1, 2):
        partial = " ".join(words[:i])
        chunks.append(res({"text": partial}, "PARTIAL", tokens_of(partial)))
    full = " ".join(words)
    user_text = str(last.get("text") or "")
    if "[[rewrite]]" in user_text and len(chunks) >= 2:
        # The server revises text it already streamed: the first word changes from here on.
        rewritten = "Revised" + full[len(words[0]) :]
        mid = len(chunks) // 2
        for j in range(mid, len(chunks)):
            t = chunks[j]["alternatives"][0]["message"]["text"]
            chunks[j]["alternatives"][0]["message"]["text"] = "Revised" + t[len(words[0]) :]
        full = rewritten
    if "[[stream_error]]" in user_text:  # grpc-gateway style error line after two chunks
        err = {"grpcCode": 13, "httpCode": 500, "message": "Internal server error",
               "httpStatus": "Internal Server Error", "details": []}  # fmt: skip
        return [*chunks[:2], {"error": err}]
    if "[[content_filter]]" in user_text:
        return [
            *chunks[:3],
            res({"text": FILTERED_TEXT}, "CONTENT_FILTER", tokens_of(FILTERED_TEXT)),
        ]
    return [*chunks, res({"text": full}, final_status, tokens_of(full))]
