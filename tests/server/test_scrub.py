"""The server-level scrub: provider credentials never leave in an error answer, whatever built it."""

from __future__ import annotations

from typing import Any

import orjson

from llmgw.config import Settings
from llmgw.errors import InvalidRequest, UpstreamError
from llmgw.server.errors import error_response
from llmgw.server.scrub import Scrubber
from llmgw.server.streaming import error_event

SECRET = "sk-provider-credential-0123456789"


def test_registered_secrets_are_scrubbed_from_error_answers_and_stream_events() -> None:
    scrubber = Scrubber([SECRET, "short"])  # too short to scrub safely: ignored
    assert scrubber.secrets == (SECRET,)
    leaky = UpstreamError(
        f"upstream said: invalid key {SECRET}; Authorization: Bearer abc.def.ghi",
        provider="p",
        param=SECRET,
    )
    body = orjson.loads(error_response(leaky, scrubber).body)["error"]
    assert SECRET not in body["message"] and body["param"] == "[redacted]"
    assert "abc.def.ghi" not in body["message"]  # upstream errors: bearer tokens too
    event = error_event(leaky, scrubber)
    assert SECRET.encode() not in event and b"[redacted]" in event
    # Our own errors keep their text (no pattern redaction), but a credential still goes.
    own = InvalidRequest(f"model key_abcdefghijkl not found near {SECRET}")
    msg = orjson.loads(error_response(own, scrubber).body)["error"]["message"]
    assert "key_abcdefghijkl" in msg and SECRET not in msg
    # Each scrubber holds its own secrets: another gateway's is not affected.
    other = orjson.loads(error_response(InvalidRequest(SECRET), Scrubber()).body)
    assert SECRET in other["error"]["message"]


async def test_a_running_gateway_registers_its_providers_credentials(
    settings: Settings, upstream_key: str
) -> None:
    from llmgw.server.state import Gateway

    gw: Any = Gateway(settings)
    await gw.start()
    try:
        err = UpstreamError(f"echo {upstream_key}", provider="openai")
        assert upstream_key not in bytes(error_response(err, gw.scrubber).body).decode()
    finally:
        await gw.stop()
    assert (
        upstream_key
        in bytes(error_response(InvalidRequest(upstream_key), gw.scrubber).body).decode()
    )
