"""The OpenAI request shapes llmgw accepts.

Requests are parsed into these models once, at the edge. Unknown top-level fields are rejected
(OpenAI does the same), so fields that would steer the gateway itself (``api_base``, ``api_key``,
extra headers...: ``FORBIDDEN_FIELDS``) are never accepted or forwarded; the server checks for them
before validating and names the field in a specific message (``forbidden_field``). That check is
not a model validator: a Python callback inside every validation cost 0.5 of its ~2.7 µs.

Model names follow one grammar, ``[provider/]model[:version]`` (``MODEL_NAME_PATTERN``): ASCII
letters, digits and ``. _ - : / @ +``, at most ``MODEL_NAME_MAX`` characters, so every accepted name
fits a header, a metric label, a log line and the usage columns (``model`` varchar(200),
``model_version`` varchar(64): ``MODEL_MAX``, ``VERSION_MAX``). The schema checks only the length;
the resolver checks the rest once per distinct name (``llmgw.routing.resolve``), because a
``pattern`` here would run on every request (about 0.2 µs) while the resolver's memo makes a
repeated name free. Booleans are strict: ``"stream": "yes"`` or ``1`` is a 400, not ``true``.

Responses are built by the provider adapters as plain OpenAI-shaped dicts (see
``llmgw.providers.base``), which keeps the hot path free of a second round of model construction.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

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

# Fields that would let a caller redirect the gateway or inject credentials (CVE-2024-6587 class).
FORBIDDEN_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "organization",
        "extra_headers",
        "extra_query",
        "extra_body",
        "headers",
        "custom_llm_provider",
        "aws_access_key_id",
        "vertex_credentials",
    }
)

MODEL_MAX = 200
"""Longest provider-side model name (the usage table's ``model`` column)."""
VERSION_MAX = 64
"""Longest version, the part after the last ``:`` (the usage table's ``model_version`` column)."""
MODEL_NAME_MAX = 64 + 1 + MODEL_MAX + 1 + VERSION_MAX
"""Longest ``model`` a request may send: provider name, ``/``, model, ``:``, version."""
MODEL_NAME_PATTERN = r"[A-Za-z0-9._:/@+-]+"
"""The characters of a model name: printable ASCII without spaces, quotes or controls, so a name
can never break a header (CR, LF, NUL), a log line or a database column's encoding."""

# A JSON boolean only: pydantic's lax mode would take "yes", "on", 1 and "1" as true.
StrictBool = Annotated[bool, Strict()]
# The pattern is documented (OpenAPI) but checked by the resolver, once per distinct name.
_ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MODEL_NAME_MAX,
        json_schema_extra={"pattern": f"^{MODEL_NAME_PATTERN}$"},
    ),
]

MAX_MESSAGES = 2048
MAX_TOKENS_CAP = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=False)


class _Open(BaseModel):
    # Nested objects keep unknown fields: providers add members over time.
    model_config = ConfigDict(extra="allow")


class FunctionCall(_Open):
    """A function call made by the assistant; ``arguments`` is a JSON string."""

    name: str = Field(max_length=256)
    arguments: str = ""


class ToolCall(_Open):
    """One tool call in an assistant message."""

    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDef(_Open):
    """A callable function offered to the model."""

    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Open):
    """A tool offered to the model."""

    type: Literal["function"] = "function"
    function: FunctionDef


class ContentPart(_Open):
    """One part of a multi-part message (text, image_url, input_audio...)."""

    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(_Open):
    """One message of a conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    function_call: FunctionCall | None = None

    def text(self) -> str:
        """The message's text, multi-part text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Strict):
    """``stream_options``: ask for a final usage chunk."""

    include_usage: StrictBool = False
    include_obfuscation: StrictBool | None = None


class ChatRequest(_Strict):
    """``POST /v1/chat/completions``."""

    model: _ModelName
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=8)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = Field(default=None, max_length=256)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: dict[str, Any] | None = None
    # A signed 64-bit integer, as OpenAI documents it; larger ones are a 400 naming the field
    # (the OpenAPI document carries the bounds, so a fuzzer's valid data stays valid).
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    metadata: dict[str, str] | None = None
    store: StrictBool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for a final usage chunk in the stream."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens


class EmbeddingRequest(_Strict):
    """``POST /v1/embeddings``."""

    model: _ModelName
    input: str | list[str] | list[int] | list[list[int]] = Field(...)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1, le=65536)
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _non_empty(self) -> EmbeddingRequest:
        if isinstance(self.input, list) and not self.input:
            raise ValueError("input must not be empty")
        if isinstance(self.input, list) and len(self.input) > 2048:
            raise ValueError("input has more than 2048 items")
        return self

    def texts(self) -> list[str]:
        """The input as a list of strings (token-id inputs are not text)."""
        if isinstance(self.input, str):
            return [self.input]
        return [x for x in self.input if isinstance(x, str)]
