"""OpenAI wire models for requests, validated once at the edge."""

from __future__ import annotations

from llmgw.schemas.openai import (
    FORBIDDEN_FIELDS,
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
    "ChatMessage",
    "ChatRequest",
    "EmbeddingRequest",
    "FunctionDef",
    "StreamOptions",
    "Tool",
    "ToolCall",
]
