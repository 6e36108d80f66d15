"""Schemathesis against the gateway's own OpenAPI document: positive and negative (fuzzed) cases,
a bounded number per operation; never a 5xx, always the error envelope on 4xx.

Driven through ``APIOperation.as_strategy`` and Hypothesis directly: schemathesis 4.32's pytest
integration (``from_fixture``) reads ``request.node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

MAX_EXAMPLES = 40


@pytest.fixture
def operations(gateway_server: Any) -> dict[str, Any]:
    """Every operation of the schema as served by the running gateway."""
    schema = schemathesis.openapi.from_url(f"{gateway_server.url}/openapi.json")
    ops = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        ops.append(result.ok())
    return {f"{op.method.upper()} {op.path}": op for op in ops}


def test_route_table_matches_the_document(gateway_server: Any, operations: dict[str, Any]) -> None:
    from llmgw.server.openapi import openapi_document

    served = {
        f"{method} {route.path.replace(':path}', '}')}"
        for route in gateway_server.app.routes
        for method in route.methods - {"HEAD"}
    }
    documented = {
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
    }
    assert served == documented  # no shadow endpoints, nothing documented that is not served
    assert set(operations) <= documented


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(
    "operation", ["POST /v1/chat/completions", "POST /v1/embeddings", "GET /v1/models"]
)
def test_fuzzed_requests_never_get_a_5xx(
    operations: dict[str, Any], key: Any, emulator: Any, operation: str, mode: GenerationMode
) -> None:
    op = operations[operation]
    headers = {"Authorization": f"Bearer {key.secret}"}
    seen: dict[int, int] = {}

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call(headers=headers, timeout=20)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        if 400 <= response.status_code < 500:
            err = response.json()["error"]
            assert set(err) == {"message", "type", "param", "code"}
            assert isinstance(err["message"], str) and err["message"]
        # the checks schemathesis ships: status codes, content types and bodies match the document
        case.validate_response(response, headers=headers)

    run()
    assert seen, "no request was generated"
    if mode is GenerationMode.NEGATIVE and operation.startswith("POST"):
        assert all(400 <= s < 500 for s in seen), seen  # schema-violating bodies never pass
