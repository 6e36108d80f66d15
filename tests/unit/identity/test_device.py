"""The device grant's state machine (OAUTH-11, RFC 8628 §3.5, §6.1)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from llmgw.auth.users import UserInfo
from llmgw.errors import NotFound
from llmgw.identity import device
from llmgw.identity.clients import CLI_CLIENT_ID
from llmgw.identity.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidGrant,
    SlowDown,
)

from .conftest import Clock


def _start(engine: Engine, clock: Clock) -> device.DeviceGrant:
    return device.start(
        engine, CLI_CLIENT_ID, "chat admin", base_url="https://gw.example/", clock=clock
    )


def _poll(engine: Engine, grant: device.DeviceGrant, clock: Clock) -> device.DeviceApproved:
    return device.poll(engine, grant.device_code, client_id=CLI_CLIENT_ID, clock=clock)


def test_user_code_shape_OAUTH_11(engine: Engine, clock: Clock) -> None:
    grant = _start(engine, clock)
    letters = grant.user_code.replace("-", "")
    assert len(letters) == 8 and set(letters) <= set(device.USER_CODE_ALPHABET)
    assert len(set(device.USER_CODE_ALPHABET)) == 20
    assert grant.verification_uri == "https://gw.example/device"
    assert grant.verification_uri_complete.endswith(f"?user_code={grant.user_code}")
    assert grant.interval == 5 and grant.expires_in == 600
    assert grant.device_code not in repr(grant)


def test_pending_slow_down_approve_then_used_OAUTH_11(
    engine: Engine, alice: UserInfo, clock: Clock
) -> None:
    grant = _start(engine, clock)
    with pytest.raises(AuthorizationPending):
        _poll(engine, grant, clock)
    clock.advance(1)
    with pytest.raises(SlowDown):
        _poll(engine, grant, clock)
    clock.advance(6)  # the interval is now 10 s
    with pytest.raises(SlowDown):
        _poll(engine, grant, clock)
    clock.advance(15)
    with pytest.raises(AuthorizationPending):
        _poll(engine, grant, clock)
    shown = device.pending(engine, grant.user_code.lower(), clock=clock)
    assert shown is not None and shown.client_name == "llmgw CLI" and shown.scope == "chat admin"
    device.approve(engine, grant.user_code.replace("-", " "), alice.id, clock=clock)
    assert device.pending(engine, grant.user_code, clock=clock) is None
    clock.advance(16)
    approved = _poll(engine, grant, clock)
    assert approved.user_id == alice.id and approved.scope == "chat admin"
    clock.advance(16)
    with pytest.raises(InvalidGrant):  # D4: tokens once
        _poll(engine, grant, clock)


def test_denied_OAUTH_11(engine: Engine, clock: Clock) -> None:
    grant = _start(engine, clock)
    device.deny(engine, grant.user_code, clock=clock)
    with pytest.raises(AccessDenied):
        _poll(engine, grant, clock)
    with pytest.raises(NotFound):
        device.deny(engine, grant.user_code, clock=clock)


def test_expired_OAUTH_11(engine: Engine, alice: UserInfo, clock: Clock) -> None:
    grant = _start(engine, clock)
    clock.advance(601)
    with pytest.raises(ExpiredToken):
        _poll(engine, grant, clock)
    assert device.pending(engine, grant.user_code, clock=clock) is None
    with pytest.raises(NotFound):
        device.approve(engine, grant.user_code, alice.id, clock=clock)


def test_another_client_or_garbage_is_invalid_grant(engine: Engine, clock: Clock) -> None:
    grant = _start(engine, clock)
    with pytest.raises(InvalidGrant):
        device.poll(engine, grant.device_code, client_id="c_other", clock=clock)
    for code in ("", "x" * 300, "nope"):
        with pytest.raises(InvalidGrant):
            device.poll(engine, code, client_id=CLI_CLIENT_ID, clock=clock)


@pytest.mark.parametrize("typed", ["", "BCDF", "BCDFGHJKX", "12345678"])
def test_pending_of_unknown_codes_is_none(engine: Engine, clock: Clock, typed: str) -> None:
    _start(engine, clock)
    assert device.pending(engine, typed, clock=clock) is None


def test_normalize_and_format() -> None:
    assert device.normalize_user_code(" bcdf-ghjk ") == "BCDFGHJK"
    assert device.format_user_code("BCDFGHJK") == "BCDF-GHJK"
    assert device.format_user_code("ABC") == "ABC"
