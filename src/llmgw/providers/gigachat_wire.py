"""OpenAI <-> GigaChat v1 chat translation (pure functions, no I/O).

Requests: the first system (or developer) message goes first and later ones become ``user``
(GigaChat answers 422 otherwise); ``tool`` -> ``function`` with the name resolved from the calling
``tool_call_id`` and the content forced to a JSON-object string; ``tools`` -> ``functions``;
arguments JSON string -> object. GigaChat v1 allows one function call per assistant turn, so an
assistant turn with several ``tool_calls`` is replayed as call, result, call, result...

Responses: synthesized ``chatcmpl-`` / ``call_`` ids, ``function_call`` -> ``tool_calls``,
``blacklist`` -> ``content_filter``, stream chunks fixed up to ``chat.completion.chunk``.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from llmgw.errors import InvalidRequest
from llmgw.providers.base import Usage
from llmgw.providers.wire import arguments_text, tool_arguments
from llmgw.schemas import ChatMessage, ChatRequest

__all__ = [
    "FINISH_REASONS",
    "StreamState",
    "chat_body",
    "chat_response",
    "json_object_string",
    "usage_of",
]

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "function_call": "tool_calls",
    "blacklist": "content_filter",
    "error": "stop",  # the model produced invalid function arguments; OpenAI has no such reason
}


# Ids only need to be unique, not secret: the ``random`` module's generator (seeded from the OS,
# reseeded in a forked child) costs ~0.1 us per id where ``uuid4`` (a syscall and a UUID) costs ~2.5.
_bits = random.getrandbits


def new_call_id() -> str:
    """An OpenAI-style tool call id: ``call_`` and 24 random hex digits."""
    return "call_" + _bits(96).to_bytes(12, "big").hex()


def new_completion_id() -> str:
    """An OpenAI-style completion id: ``chatcmpl-`` and 32 random hex digits."""
    return "chatcmpl-" + _bits(128).to_bytes(16, "big").hex()


def json_object_string(content: str) -> str:
    """Tool output as the JSON-object string GigaChat requires (non-objects become ``{"result": ...}``)."""
    value: Any = content
    for _ in range(3):  # undo up to three levels of double encoding
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    if not isinstance(value, dict):
        value = {"result": value}
    return json.dumps(value, ensure_ascii=False)


def _text(msg: ChatMessage) -> str:
    if isinstance(msg.content, list) and any(p.type != "text" for p in msg.content):
        raise InvalidRequest(
            "this GigaChat provider accepts text content only (no image or audio parts)",
            param="messages",
        )
    return msg.text()


def _plain_messages(messages: list[ChatMessage]) -> list[dict[str, Any]] | None:
    """``_messages`` for the common case (text-only system/user/assistant turns, no tool calls).

    ``None`` when any message needs the full translation; otherwise the same list it would build.
    """
    out: list[dict[str, Any]] = []
    system: dict[str, Any] | None = None
    for msg in messages:
        role, content = msg.role, msg.content
        if type(content) is not str or msg.tool_calls or msg.function_call is not None:
            return None
        if role == "user" or role == "assistant":
            out.append({"role": role, "content": content})
        elif role == "system" or role == "developer":
            if system is None:
                system = {"role": "system", "content": content}
            else:
                out.append({"role": "user", "content": content})
        else:
            return None
    return [system, *out] if system is not None else out


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    plain = _plain_messages(messages)
    if plain is not None:
        return plain
    out: list[dict[str, Any]] = []
    system: dict[str, Any] | None = None
    names: dict[str, str] = {}  # tool_call_id -> function name
    pending: list[tuple[str, dict[str, Any]]] = []  # calls of the open assistant turn, in order
    results: dict[str, dict[str, Any]] = {}

    def flush() -> None:
        # Replay a multi-call assistant turn as call, result, call, result...
        for call_id, call in pending:
            out.append(call)
            if call_id in results:
                out.append(results.pop(call_id))
        out.extend(results.values())
        pending.clear()
        results.clear()

    for msg in messages:
        role = msg.role
        if role == "tool" or (role == "function" and msg.tool_call_id is None):
            name = names.get(msg.tool_call_id or "", msg.name or "")
            if not name:
                raise InvalidRequest(
                    "a tool message's tool_call_id does not match any earlier tool call",
                    param="messages",
                )
            result = {"role": "function", "name": name, "content": json_object_string(_text(msg))}
            if msg.tool_call_id and any(cid == msg.tool_call_id for cid, _ in pending):
                results[msg.tool_call_id] = result
            else:
                flush()
                out.append(result)
            continue
        flush()
        if role in ("system", "developer"):
            if system is None:
                system = {"role": "system", "content": _text(msg)}
            else:
                out.append({"role": "user", "content": _text(msg)})
            continue
        if role == "assistant" and (msg.tool_calls or msg.function_call):
            calls = [(tc.id, tc.function) for tc in msg.tool_calls or []]
            if msg.function_call is not None:
                calls.append((msg.function_call.name, msg.function_call))
            for i, (call_id, fn) in enumerate(calls):
                names[call_id] = fn.name
                content = _text(msg) if i == 0 else ""
                call = {
                    "role": "assistant",
                    "content": content,
                    "function_call": {
                        "name": fn.name,
                        "arguments": tool_arguments(fn.arguments, fn.name),
                    },
                }
                pending.append((call_id, call))
            continue
        out.append(
            {"role": "user" if role not in ("user", "assistant") else role, "content": _text(msg)}
        )
    flush()
    return [system, *out] if system is not None else out


def chat_body(request: ChatRequest, model: str) -> dict[str, Any]:
    """The GigaChat v1 ``/chat/completions`` body for an OpenAI request."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("GigaChat returns one choice per request; n must be 1", param="n")
    body: dict[str, Any] = {"model": model, "messages": _messages(request.messages)}
    if request.stream:
        body["stream"] = True
    if request.temperature is not None:
        if request.temperature == 0:
            body["top_p"] = (
                0  # GigaChat rejects temperature 0; top_p 0 is its most deterministic mode
            )
        else:
            body["temperature"] = request.temperature
    if request.top_p is not None and "top_p" not in body:
        body["top_p"] = request.top_p
    if request.token_limit is not None:
        body["max_tokens"] = request.token_limit
    functions = [
        {
            "name": t.function.name,
            "description": t.function.description or "",
            "parameters": t.function.parameters or {"type": "object", "properties": {}},
        }
        for t in request.tools or []
    ]
    choice = request.tool_choice
    if functions and choice != "none":
        body["functions"] = functions
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if not name:
                raise InvalidRequest("tool_choice must name a function", param="tool_choice")
            body["function_call"] = {"name": name}
        elif choice == "required" and len(functions) == 1:
            body["function_call"] = {"name": functions[0]["name"]}
    rf = request.response_format
    if rf is not None and rf.get("type") == "json_schema":
        spec = rf.get("json_schema") or {}
        body["response_format"] = {"type": "json_schema", "schema": spec.get("schema", {})}
        if spec.get("strict") is not None:
            body["response_format"]["strict"] = spec["strict"]
    elif rf is not None and rf.get("type") == "json_object":
        raise InvalidRequest(
            "GigaChat has no schema-less JSON mode; use response_format json_schema",
            param="response_format",
        )
    if request.reasoning_effort:
        body["reasoning_effort"] = request.reasoning_effort
    return body


def usage_of(raw: Any) -> Usage:
    """GigaChat ``usage`` as ``Usage`` (total = prompt + completion when missing)."""
    if not isinstance(raw, dict):
        return Usage()
    prompt, completion = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(raw.get("total_tokens") or prompt + completion))


def _usage_dict_of(usage: Usage, raw: Any) -> dict[str, Any]:
    """The OpenAI ``usage`` object for ``usage`` (read from ``raw``), with GigaChat's cached tokens."""
    cached = raw.get("precached_prompt_tokens") if isinstance(raw, dict) else None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": int(cached or 0)},
    }


def _tool_calls(fc: dict[str, Any], call_id: str) -> list[dict[str, Any]]:
    text = arguments_text(fc.get("arguments", {}))
    fn = {"name": str(fc.get("name", "")), "arguments": text}
    return [{"id": call_id, "type": "function", "function": fn}]


def chat_response(raw: dict[str, Any]) -> tuple[dict[str, Any], Usage, str]:
    """An OpenAI ``chat.completion`` from a GigaChat answer; also its usage and model."""
    choices = []
    for i, ch in enumerate(raw["choices"]):
        msg = ch.get("message") or {}
        out: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
        fc = msg.get("function_call")
        if isinstance(fc, dict):
            out["tool_calls"] = _tool_calls(fc, new_call_id())
            out["content"] = out["content"] or None
        reason = FINISH_REASONS.get(str(ch.get("finish_reason")), "stop")
        choices.append(
            {"index": ch.get("index", i), "message": out, "logprobs": None, "finish_reason": reason}
        )
    model = str(raw.get("model", ""))
    raw_usage = raw.get("usage")
    usage = usage_of(raw_usage)
    body = {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(raw.get("created") or time.time()),
        "model": model,
        "choices": choices,
        "usage": _usage_dict_of(usage, raw_usage),
    }
    return body, usage, model


class StreamState:
    """Turns GigaChat stream chunks into OpenAI ``chat.completion.chunk`` objects."""

    def __init__(self) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = ""
        self.usage: Usage | None = None
        self.usage_dict: dict[str, Any] | None = None
        self.finished = False
        self._role_sent = False

    def convert(self, raw: dict[str, Any]) -> dict[str, Any]:
        """One upstream chunk as an OpenAI chunk (usage is kept aside for the final usage chunk)."""
        self.model = str(raw.get("model") or self.model)
        self.created = int(raw.get("created") or self.created)
        choices = []
        for i, ch in enumerate(raw.get("choices") or []):
            d = ch.get("delta") or {}
            delta: dict[str, Any] = {}
            if not self._role_sent:
                delta["role"] = "assistant"
                self._role_sent = True
            if d.get("content"):
                delta["content"] = d["content"]
            if isinstance(d.get("function_call"), dict):
                call = _tool_calls(d["function_call"], new_call_id())[0]
                delta["tool_calls"] = [{"index": 0, **call}]
            reason = ch.get("finish_reason")
            mapped = FINISH_REASONS.get(str(reason), "stop") if reason else None
            if mapped:
                self.finished = True
            choices.append(
                {
                    "index": ch.get("index", i),
                    "delta": delta,
                    "logprobs": None,
                    "finish_reason": mapped,
                }
            )
        if raw.get("usage") is not None:
            self.usage = usage_of(raw["usage"])
            self.usage_dict = _usage_dict_of(self.usage, raw["usage"])
        return self.chunk(choices)

    def chunk(
        self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """An OpenAI chunk envelope around ``choices``."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if usage is not None:
            out["usage"] = usage
        return out
