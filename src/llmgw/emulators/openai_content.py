"""Deterministic content for the OpenAI emulator: echo replies, tool calls, stream frames, embeddings.

Token counts are whitespace-separated words (not a real tokenizer): prompt tokens are the words
of every message's text, completion tokens the words of the reply.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
from typing import Any

import orjson

__all__ = [
    "completion",
    "count_tokens",
    "embedding",
    "example_arguments",
    "pick_tool",
    "prompt_tokens",
    "reply_words",
    "stream_frames",
    "tool_call_id",
]


def message_text(message: Any) -> str:
    """The text of one message (multi-part text parts joined)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def count_tokens(text: str) -> int:
    """Whitespace tokens in ``text``."""
    return len(text.split())


def prompt_tokens(messages: list[Any]) -> int:
    """Whitespace tokens over every message's text (at least 1, as a real tokenizer would)."""
    return max(1, sum(count_tokens(message_text(m)) for m in messages))


def reply_words(messages: list[Any]) -> list[str]:
    """The reply as words: an echo of the last user message, or an acknowledgement of a tool result."""
    last = messages[-1] if messages else {}
    role = last.get("role") if isinstance(last, dict) else None
    if role in ("tool", "function"):
        return ["Tool", "result:", *message_text(last).split()]
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            words = message_text(m).split()
            if words:
                return ["Echo:", *words]
            break
    return ["Hello!", "How", "can", "I", "help?"]


def pick_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The function to call, when tools are offered and the last user message asks for one.

    A tool is called when ``tool_choice`` names it, when the last message is from the user and
    mentions a tool's name, or when ``tool_choice`` is ``"required"`` (then the first tool).
    """
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    if not functions:
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        return next((f for f in functions if f["name"] == wanted), None)
    messages = body.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    text = message_text(last)
    for f in functions:
        if f["name"] in text:
            return f  # type: ignore[no-any-return]
    if choice == "required":
        return functions[0]  # type: ignore[no-any-return]
    return None


def _example(schema: Any, depth: int = 0) -> Any:
    if not isinstance(schema, dict) or depth > 4:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "string":
        return "example"
    if kind == "integer":
        return 1
    if kind == "number":
        return min(1.5, schema.get("maximum", 1.5))
    if kind == "boolean":
        return True
    if kind == "array":
        item = _example(schema.get("items"), depth + 1)
        return [] if item is None else [item]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _example(v, depth + 1) for k, v in props.items()}
    return None


def structured_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of ``response_format: {"type": "json_schema", ...}``, if the body asks
    for structured output (OpenAI then answers JSON that fits it)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {"type": "object"}


def example_arguments(function: dict[str, Any]) -> str:
    """Arguments (a JSON string) that fit the function's parameter schema: the same every time."""
    args = _example(function.get("parameters") or {"type": "object"})
    return orjson.dumps(args if isinstance(args, dict) else {}).decode()


def tool_call_id(name: str, text: str) -> str:
    """A stable ``call_...`` id for a call of ``name`` prompted by ``text``."""
    return (
        "call_"
        + hashlib.sha1((name + "\0" + text).encode(), usedforsecurity=False).hexdigest()[:24]
    )


def embedding(item: str | list[int], dims: int, *, as_base64: bool) -> list[float] | str:
    """A unit vector of ``dims`` floats derived from a hash of ``item``; base64 of float32 LE if asked."""
    key = item.encode() if isinstance(item, str) else orjson.dumps(item)
    raw = hashlib.shake_256(key).digest(dims * 2)
    ints = struct.unpack(f"<{dims}h", raw)
    norm = math.sqrt(sum(i * i for i in ints)) or 1.0
    vec = [i / norm for i in ints]
    if as_base64:
        return base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
    return vec


_FINGERPRINT = "fp_llmgw_emulator"


def choices(body: dict[str, Any]) -> int:
    """``n``: how many choices to produce (1..8)."""
    n = body.get("n")
    return n if isinstance(n, int) and 0 < n <= 8 else 1


def plan(body: dict[str, Any]) -> tuple[list[str], str, dict[str, Any] | None, int, int]:
    """Words, finish reason, tool call, prompt and completion tokens of one choice."""
    messages = body["messages"]
    tool = pick_tool(body)
    prompt = prompt_tokens(messages)
    if tool is not None:
        args = example_arguments(tool)
        call = {
            "id": tool_call_id(tool["name"], message_text(messages[-1])),
            "type": "function",
            "function": {"name": tool["name"], "arguments": args},
        }
        return [], "tool_calls", call, prompt, count_tokens(args) + 1
    schema = structured_schema(body)
    if schema is not None:  # structured outputs: the answer is JSON that fits the schema
        text = orjson.dumps(_example(schema)).decode()
        return [text], "stop", None, prompt, count_tokens(text)
    words = reply_words(messages)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and 0 < limit < len(words):
        words, finish = words[:limit], "length"
    return words, finish, None, prompt, len(words)


def completion(body: dict[str, Any], completion_id: str) -> dict[str, Any]:
    """The ``chat.completion`` object answering ``body``."""
    words, finish, call, prompt, used = plan(body)
    n = choices(body)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if call else " ".join(words),
        "refusal": None,
        "annotations": [],
    }
    if call:
        message["tool_calls"] = [call]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": used * n,
            "total_tokens": prompt + used * n,
        },
        "system_fingerprint": _FINGERPRINT,
    }


def _deltas(words: list[str], call: dict[str, Any] | None) -> list[dict[str, Any]]:
    if call is None:
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        return [first] + [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
    args = call["function"]["arguments"]
    head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
    half = len(args) // 2
    return [
        {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None},
        {"tool_calls": [{"index": 0, "function": {"arguments": args[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]},
    ]


def stream_frames(body: dict[str, Any], completion_id: str) -> list[bytes]:
    """The SSE frames answering ``body``, as OpenAI sends them, ending with ``data: [DONE]``.

    A first delta with the role, content (or tool-call) deltas, a final chunk with
    ``finish_reason``, then, when ``stream_options.include_usage`` is set, a usage chunk with
    empty ``choices`` (the other chunks then carry ``"usage": null``).
    """
    words, finish, call, prompt, used = plan(body)
    n = choices(body)
    opts = body.get("stream_options")
    include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": _FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None
    frames: list[bytes] = []
    for delta in _deltas(words, call):
        for i in range(n):
            choice = {"index": i, "delta": delta, "logprobs": None, "finish_reason": None}
            frames.append(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")
    for i in range(n):
        choice = {"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}
        frames.append(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")
    if include_usage:
        usage = {"prompt_tokens": prompt, "completion_tokens": used * n}
        usage["total_tokens"] = prompt + usage["completion_tokens"]
        frames.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return frames
