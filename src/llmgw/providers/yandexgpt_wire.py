"""OpenAI <-> YandexGPT (Foundation Models v1 REST) translation (pure functions, no I/O).

Model names: ``yandexgpt-lite`` + version ``rc`` -> ``gpt://<folder>/yandexgpt-lite/rc``.
Temperature: OpenAI's 0..2 range is mapped linearly onto Yandex's 0..1 (``t / 2``).
The native stream repeats the whole text so far; ``CumulativeText`` turns it into deltas following
the reference's algorithm, option (a): text already sent is never retracted; after a rewrite the new
tail is found by anchoring on the end of the previous text, and a content-filter final only sets
``finish_reason`` (its replacement text is not appended).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection
from typing import Any

import orjson

from llmgw.errors import InvalidRequest, PermissionDenied
from llmgw.providers.base import Usage
from llmgw.providers.wire import arguments_text, tool_arguments
from llmgw.schemas import ChatMessage, ChatRequest

__all__ = [
    "FOLDER_MESSAGE",
    "GRPC_HTTP_STATUS",
    "MODEL_URI_MESSAGE",
    "STATUS_TO_FINISH",
    "CumulativeText",
    "client_uri",
    "completion_body",
    "completion_response",
    "embedding_uri",
    "error_code_and_message",
    "model_uri",
    "quota_kind",
    "tool_calls_of",
    "usage_of",
]

STATUS_TO_FINISH: dict[str, str | None] = {
    "ALTERNATIVE_STATUS_UNSPECIFIED": "stop",
    "ALTERNATIVE_STATUS_PARTIAL": None,
    "ALTERNATIVE_STATUS_TRUNCATED_FINAL": "length",
    "ALTERNATIVE_STATUS_FINAL": "stop",
    "ALTERNATIVE_STATUS_CONTENT_FILTER": "content_filter",
    "ALTERNATIVE_STATUS_TOOL_CALLS": "tool_calls",
}
EMBEDDING_ALIASES = {"doc": "text-search-doc", "query": "text-search-query"}
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def client_uri(uri: str, scheme: str, folders: Collection[str]) -> str:
    """A model URI the client wrote out (``gpt://<folder>/...``), only for an allowed folder.

    The gateway calls YandexGPT with its own credentials, which may reach folders other than
    the configured one; a client naming another folder would spend them there. ``folders`` holds
    the configured ``folder_id`` and the provider's ``allowed_folders``.
    """
    given, _, rest = uri.partition("://")
    folder = rest.partition("/")[0]
    if given != scheme or folder not in folders:
        raise PermissionDenied(
            f"model URI {uri[:200]!r} is not allowed: YandexGPT {scheme}:// URIs must name "
            "this provider's folder",
            param="model",
            code="folder_not_allowed",
            hint="name the model without a URI, or ask an operator to add the folder to "
            "allowed_folders",
        )
    return uri


def model_uri(folder: str, model: str, version: str | None, folders: Collection[str] = ()) -> str:
    """``gpt://<folder>/<model>/<version>`` (``latest`` by default); a full URI passes unchanged
    when it names ``folder`` or one of ``folders`` (else 403 ``folder_not_allowed``)."""
    if "://" in model:
        return client_uri(model, "gpt", {folder, *folders})
    branch = version or "latest"
    if not _PART.match(model) or not _PART.match(branch):
        raise InvalidRequest(f"invalid YandexGPT model name {model!r}", param="model")
    return f"gpt://{folder}/{model}/{branch}"


def embedding_uri(
    folder: str, model: str, version: str | None, folders: Collection[str] = ()
) -> str:
    """``emb://<folder>/<model>/<version>``; ``doc`` and ``query`` name the two search models; a
    full URI passes when it names ``folder`` or one of ``folders``."""
    if "://" in model:
        return client_uri(model, "emb", {folder, *folders})
    name = EMBEDDING_ALIASES.get(model, model)
    branch = version or "latest"
    if not _PART.match(name) or not _PART.match(branch):
        raise InvalidRequest(f"invalid YandexGPT embedding model {model!r}", param="model")
    return f"emb://{folder}/{name}/{branch}"


def _text(msg: ChatMessage) -> str:
    if isinstance(msg.content, list) and any(p.type != "text" for p in msg.content):
        raise InvalidRequest(
            "YandexGPT accepts text content only (no image or audio parts)", param="messages"
        )
    return msg.text()


def _messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    results: list[dict[str, Any]] = []

    def flush() -> None:
        if results:
            # Native tool results: one message with every result, matched to calls by name.
            out.append({"role": "user", "toolResultList": {"toolResults": list(results)}})
            results.clear()

    for msg in messages:
        if msg.role in ("tool", "function"):
            name = names.get(msg.tool_call_id or "", msg.name or "")
            if not name:
                raise InvalidRequest(
                    "a tool message's tool_call_id does not match any earlier tool call",
                    param="messages",
                )
            results.append({"functionResult": {"name": name, "content": _text(msg)}})
            continue
        flush()
        if msg.role == "assistant" and (msg.tool_calls or msg.function_call):
            calls = [(tc.id, tc.function) for tc in msg.tool_calls or []]
            if msg.function_call is not None:
                calls.append((msg.function_call.name, msg.function_call))
            tool_calls = []
            for call_id, fn in calls:
                names[call_id] = fn.name
                tool_calls.append(
                    {
                        "functionCall": {
                            "name": fn.name,
                            "arguments": tool_arguments(fn.arguments, fn.name),
                        }
                    }
                )
            out.append({"role": "assistant", "toolCallList": {"toolCalls": tool_calls}})
            continue
        role = "system" if msg.role in ("system", "developer") else msg.role
        out.append({"role": role, "text": _text(msg)})
    flush()
    return out


def completion_body(request: ChatRequest, uri: str) -> dict[str, Any]:
    """The ``/foundationModels/v1/completion`` body for an OpenAI request."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest(
            "YandexGPT returns one alternative per request; n must be 1", param="n"
        )
    options: dict[str, Any] = {"stream": request.stream}
    if request.temperature is not None:
        options["temperature"] = round(request.temperature / 2, 4)
    if request.token_limit is not None:
        options["maxTokens"] = str(request.token_limit)
    body: dict[str, Any] = {
        "modelUri": uri,
        "completionOptions": options,
        "messages": _messages(request.messages),
    }
    if request.tools:
        body["tools"] = [
            {
                "function": {
                    "name": t.function.name,
                    "description": t.function.description or "",
                    "parameters": t.function.parameters or {"type": "object", "properties": {}},
                    **({"strict": t.function.strict} if t.function.strict is not None else {}),
                }
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if not name:
                raise InvalidRequest("tool_choice must name a function", param="tool_choice")
            body["toolChoice"] = {"functionName": name}
        elif isinstance(choice, str) and choice in ("none", "auto", "required"):
            body["toolChoice"] = {"mode": choice.upper()}
        if request.parallel_tool_calls is not None:
            body["parallelToolCalls"] = request.parallel_tool_calls
    rf = request.response_format
    if rf is not None and rf.get("type") == "json_object":
        body["jsonObject"] = True
    elif rf is not None and rf.get("type") == "json_schema":
        body["jsonSchema"] = {"schema": (rf.get("json_schema") or {}).get("schema", {})}
    return body


def _int(value: Any) -> int:
    """An int64 count that Yandex sends as a string (numbers accepted too)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def usage_of(raw: Any) -> Usage:
    """YandexGPT's string-typed usage as ``Usage``."""
    if not isinstance(raw, dict):
        return Usage()
    prompt, completion = _int(raw.get("inputTextTokens")), _int(raw.get("completionTokens"))
    total = _int(raw.get("totalTokens")) or prompt + completion
    return Usage(prompt, completion, total)


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` (synthesized ids, JSON-string arguments) from a ``toolCallList``."""
    calls = ((message.get("toolCallList") or {}).get("toolCalls")) or []
    out = []
    for i, call in enumerate(calls):
        fc = call.get("functionCall") or {}
        text = arguments_text(fc.get("arguments", {}))
        out.append(
            {
                "index": i,
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {"name": str(fc.get("name", "")), "arguments": text},
            }
        )
    return out


def completion_response(result: dict[str, Any], model: str) -> tuple[dict[str, Any], Usage]:
    """An OpenAI ``chat.completion`` from a ``result`` object, and its usage."""
    alt = (result.get("alternatives") or [{}])[0]
    message = alt.get("message") or {}
    out: dict[str, Any] = {"role": "assistant", "content": message.get("text", "")}
    calls = tool_calls_of(message)
    if calls:
        out["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        out["content"] = None
    reason = STATUS_TO_FINISH.get(str(alt.get("status")), "stop") or "stop"
    usage = usage_of(result.get("usage"))
    body = {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": result.get("modelVersion"),
        "choices": [{"index": 0, "message": out, "logprobs": None, "finish_reason": reason}],
        "usage": usage.as_dict(),
    }
    return body, usage


class CumulativeText:
    """Deltas from a stream of whole-text-so-far snapshots that may rewrite earlier text."""

    def __init__(self) -> None:
        self.previous = ""
        """The last snapshot received."""
        self.sent = ""
        """Everything emitted so far (what the client has)."""
        self.rewrites = 0
        """Snapshots that did not extend the previous one."""

    def feed(self, text: str) -> str:
        """The new text to send for this snapshot (may be empty)."""
        if text.startswith(self.previous):
            delta = text[len(self.previous) :]
        else:
            self.rewrites += 1
            delta = self._after_anchor(text)
        self.previous = text
        self.sent += delta
        return delta

    def _after_anchor(self, text: str) -> str:
        """The part of ``text`` after where the previous snapshot ended, if it can be found."""
        prev = self.previous
        for size in (24, 12, 6):
            if len(prev) < size:
                continue
            anchor = prev[-size:]
            at = text.rfind(anchor)
            if at >= 0:
                return text[at + size :]
        return ""  # nothing to anchor on: skip this snapshot's diverged text


# -- errors ----------------------------------------------------------------------------------
GRPC_HTTP_STATUS = {
    # Foundation Models' documented codes (error-codes), then the generic Yandex Cloud table.
    3: 400, 4: 504, 7: 403, 8: 429, 12: 501, 13: 500, 14: 503, 16: 401,
    1: 499, 2: 500, 5: 404, 6: 409, 9: 400, 10: 409, 11: 400, 15: 500,
}  # fmt: skip
"""google.rpc code -> the HTTP status it stands for."""
MODEL_URI_MESSAGE = re.compile(r"invalid model_uri|failed to parse model uri", re.IGNORECASE)
"""The documented INVALID_ARGUMENT messages of a model URI the folder does not have."""
FOLDER_MESSAGE = re.compile(r"folder id does not match|specify folder id", re.IGNORECASE)
"""The documented INVALID_ARGUMENT messages of a folder the credential does not belong to."""
_QUOTA = re.compile(r"\b(gauge|rate) quota limit exceed")


def error_code_and_message(body: bytes) -> tuple[int | None, str | None]:
    """The gRPC code and message of an error body in any of its three observed shapes."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    err = data.get("error")
    src = err if isinstance(err, dict) else data  # {"error": {...}} or {"error": "..", "code": ..}
    code = src.get("grpcCode", src.get("code"))
    message = src.get("message")
    if not isinstance(message, str) and isinstance(err, str):
        message = err
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else None,
    )


def quota_kind(message: str) -> str | None:
    """``gauge`` (concurrent sessions: free again in a moment) or ``rate`` (a quota over time)."""
    m = _QUOTA.search(message)
    return m.group(1) if m else None
