"""The conversation routes in the OpenAPI document (``/api/chat``, ``/api/messages``,
``/api/conversations``), each with its examples; ``openapi_document`` adds ``conversation_paths()``.

The examples are what the gateway answers in front of ``llmgw emulate openai`` with a provider
named ``local`` (``tests/server/test_conversations.py`` checks the answers have these shapes).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["conversation_paths"]

_T = "2026-12-03T12:00:00.123456+00:00"
_CID = "0b7c6a52-3d1e-4f5a-9b8c-7d6e5f4a3b2c"
_CONTEXT = {
    "strategy": "drop_oldest_turns",
    "context_window": 128000,
    "reserved_for_answer": 1024,
    "prompt_tokens": 42,
    "counted_by": "estimate",
    "dropped_turns": 0,
    "dropped_messages": 0,
    "kept_messages": 3,
    "fits": True,
}
_TURN = {
    "id": "chatcmpl-emu000000000003",
    "object": "chat.completion",
    "created": 1796280413,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Echo: And in Rome?"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    "conversation": {
        "id": _CID,
        "created": False,
        "title": "Weather in Paris",
        "model": "local/gpt-4o-mini",
        "context": _CONTEXT,
        "message_ids": [
            "5d7e8f90-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
            "6e8f9a01-2b3c-4d4e-9f50-6b7c8d9e0f1a",
        ],
    },
}
_CHUNK = (
    '{"id":"chatcmpl-emu000000000004","object":"chat.completion.chunk","created":1796280413,'
    '"model":"gpt-4o-mini","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
)
_STREAM = (
    "".join(
        f"data: {_CHUNK % (delta, finish)}\n\n"
        for delta, finish in (
            ('{"role":"assistant","content":""}', "null"),
            ('{"content":"Echo: And in Rome?"}', "null"),
            ("{}", '"stop"'),
        )
    )
    + 'data: {"id":"chatcmpl-emu000000000004","object":"chat.completion.chunk","created":'
    '1796280413,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,'
    '"completion_tokens":4,"total_tokens":13}}\n\n'
    "data: [DONE]\n\n"
)
_CONV = {
    "id": _CID,
    "object": "conversation",
    "title": "Weather in Paris",
    "model": "local/gpt-4o-mini",
    "system": "You are terse.",
    "settings": {"temperature": 0.2},
    "created_at": _T,
    "updated_at": _T,
    "messages": 4,
    "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28, "cost": "0.0000078"},
}
_MSG = {
    "id": "5d7e8f90-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
    "object": "conversation.message",
    "conversation_id": _CID,
    "seq": 0,
    "role": "user",
    "content": "Weather in Paris",
    "name": None,
    "tool_calls": None,
    "tool_call_id": None,
    "model": None,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost": "0",
    "created_at": _T,
}
_ERRORS = {
    "400": ("Bad input; `param` names the field.", "model is required to start a conversation",
            "invalid_request_error", None),
    "401": ("No key, or an unknown, revoked or expired one.", "invalid API key",
            "authentication_error", "invalid_api_key"),
    "403": ("The key may not use the model, or a token lacks the chat scope.",
            "this token does not carry the chat scope", "permission_error", "insufficient_scope"),
    "404": ("No such conversation for this key's owner (another owner's is the same 404), or an "
            "unknown model.", f"no conversation '{_CID}'", "not_found_error", None),
    "409": ("Two turns of one conversation at once: the later one is refused.",
            "the conversation changed while this turn ran (two turns at once?)",
            "conflict_error", None),
    "429": ("Beyond the key's rpm or tpm.", "rate limit reached for this API key",
            "rate_limit_error", "rate_limit_exceeded"),
    "502": ("The upstream failed.", "upstream local failed (HTTP 500)", "api_error",
            "upstream_error"),
    "503": ("The database or every upstream is unavailable.", "database error", "api_error",
            None),
    "504": ("The upstream did not answer in time.", "upstream local timed out", "api_error",
            "upstream_timeout"),
}  # fmt: skip


def _op(
    op_id: str,
    summary: str,
    description: str,
    answers: dict[str, Any],
    *,
    errors: tuple[str, ...],
    body: dict[str, Any] | None = None,
    path_id: bool = False,
    query: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    obj = {"type": "object"}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["Conversations"],
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {
            "200": {
                "description": "The answer.",
                "content": {
                    media: {"schema": obj if media.endswith("json") else {"type": "string"},
                            "example": example}
                    for media, example in answers.items()
                },
            }
        },
    }  # fmt: skip
    params = []
    if path_id:
        params.append(
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "The conversation's id.", "example": _CID}
        )  # fmt: skip
    for name, (example, text) in (query or {}).items():
        params.append(
            {"name": name, "in": "query", "required": name == "conversation_id",
             "schema": {"type": "string"}, "description": text, "example": example}
        )  # fmt: skip
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": obj, "example": body}},
        }
    for status in sorted({*errors, "401"}):
        text, message, kind, code = _ERRORS[status]
        op["responses"][status] = {
            "description": text,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"},
                    "example": {
                        "error": {"message": message, "type": kind, "param": None, "code": code}
                    },
                }
            },
        }
    return op


def conversation_paths() -> dict[str, Any]:
    """The conversation path items."""
    one = ("404", "429", "503")
    paths: dict[str, Any] = {
        "/api/chat": {"post": _op("conversationTurn", "Chat in a conversation",
            "Start a conversation (no `conversation_id`: `model` is required) or continue one: "
            "`message` (the user's text) and/or `messages` (OpenAI messages, such as a tool's "
            "result), an optional `system` prompt and `title`, and any generation setting of "
            "chat completions (`temperature`, `top_p`, `max_tokens`, `stop`, `seed`, `tools`, "
            "`tool_choice`, `response_format`...), which the conversation keeps for later turns. "
            "A turn may name another `model` or alias: the context is kept. The server sends the "
            "history fitted to the model's context window (oldest turns dropped, the system "
            "prompt kept: docs/chat.md) and reports it in `conversation.context`. The answer is "
            "chat completions' with a `conversation` object, or with `stream: true` its SSE "
            "stream (usage in the last chunk); the conversation id is also in "
            "`x-llmgw-conversation-id`. The turn is stored before the answer (before `[DONE]`); "
            "a failed call stores nothing.",
            {"application/json": _TURN, "text/event-stream": _STREAM},
            errors=("400", "403", "404", "409", "429", "502", "503", "504"),
            body={"conversation_id": _CID, "message": "And in Rome?", "temperature": 0.2})},
        "/api/messages": {
            "get": _op("listMessages", "List a conversation's messages",
                "Every message, oldest first, with the model that answered and its tokens "
                "and cost.", {"application/json": {"object": "list", "data": [_MSG]}},
                errors=(*one, "400"),
                query={"conversation_id": (_CID, "The conversation.")}),
            "post": _op("appendMessages", "Append messages",
                "Add messages without calling a model (a tool's result, a note): "
                "`{conversation_id, messages: [...]}` or one message's `role` and `content`.",
                {"application/json": {"object": "list", "data": [{**_MSG, "seq": 4}]}},
                errors=(*one, "400"),
                body={"conversation_id": _CID, "role": "user", "content": "A note."}),
        },
        "/api/conversations": {"get": _op("listConversations", "List conversations",
            "The caller's conversations (a user's, or a key's without a user), most recently "
            "used first, with their usage and cost.",
            {"application/json": {"object": "list", "data": [_CONV]}},
            errors=("400", "429", "503"), query={"limit": ("20", "1 to 1000, default 100.")})},
        "/api/conversations/{id}": {
            "get": _op("getConversation", "Show a conversation", "One conversation.",
                {"application/json": _CONV}, errors=one, path_id=True),
            "patch": _op("renameConversation", "Rename a conversation",
                "The body is `{\"title\"}` (1-200 characters).",
                {"application/json": {**_CONV, "title": "Trip planning"}},
                errors=(*one, "400"), path_id=True, body={"title": "Trip planning"}),
            "delete": _op("deleteConversation", "Delete a conversation",
                "The conversation and its messages.",
                {"application/json": {"id": _CID, "object": "conversation", "deleted": True}},
                errors=one, path_id=True),
        },
        "/api/conversations/{id}/export": {"get": _op("exportConversation",
            "Export a conversation",
            "`format=json` (default): the conversation with every message in `data`; "
            "`format=markdown`: `{id, format, content}` with the conversation as Markdown.",
            {"application/json": {**_CONV, "format": "json", "data": [_MSG]}},
            errors=(*one, "400"), path_id=True,
            query={"format": ("json", "json or markdown.")})},
    }  # fmt: skip
    return copy.deepcopy(paths)
