"""The request models refuse every field that would steer the gateway, with or without the server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmgw.schemas import FORBIDDEN_FIELDS, ChatRequest, EmbeddingRequest

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("field", sorted(FORBIDDEN_FIELDS))
def test_steering_fields_are_refused_by_the_models_themselves(field: str) -> None:
    for cls, body in (
        (ChatRequest, {"model": "m", "messages": MSG}),
        (EmbeddingRequest, {"model": "m", "input": "x"}),
    ):
        assert field not in cls.model_fields
        with pytest.raises(ValidationError) as info:
            cls.model_validate({**body, field: "http://evil.example"})
        assert [e["type"] for e in info.value.errors()] == ["extra_forbidden"]
