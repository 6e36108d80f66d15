"""OpenAI wire models for requests, validated once at the edge."""

from __future__ import annotations

from llmgw.schemas.openai import (
    FORBIDDEN_FIELDS,
    MODEL_MAX,
    MODEL_NAME_MAX,
    MODEL_NAME_PATTERN,
    VERSION_MAX,
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
    FunctionDef,
    StreamOptions,
    Tool,
    ToolCall,
)

__all__ = [
    "FORBIDDEN_FIELDS",
    "MODEL_MAX",
    "MODEL_NAME_MAX",
    "MODEL_NAME_PATTERN",
    "VERSION_MAX",
    "ChatMessage",
    "ChatRequest",
    "EmbeddingRequest",
    "FunctionDef",
    "StreamOptions",
    "Tool",
    "ToolCall",
]
