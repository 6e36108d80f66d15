"""One behaviour per upstream status across the three adapters, one Retry-After parser (RFC 9110),
and YandexGPT errors classified by their gRPC code (reference/yandexgpt.md §7)."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import orjson
import pytest

from llmgw.config import ProviderConfig
from llmgw.errors import (
    InvalidRequest,
    LlmgwError,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamTimeout,
)
from llmgw.providers.gigachat import GigaChatProvider
from llmgw.providers.openai_compat import map_status
from llmgw.providers.status import MAX_RETRY_AFTER, retry_after
from llmgw.providers.yandexgpt import YandexGPTProvider

NOW = 1_700_000_000.0


def at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


# -- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        (formatdate(NOW + 60, usegmt=True), 60.0),  # IMF-fixdate
        (formatdate(NOW - 60, usegmt=True), 0.0),  # a date in the past: now
        ("Tuesday, 14-Nov-23 22:14:20 GMT", 0.0 + 1_700_000_060 - NOW),  # RFC 850
        ("Tue Nov 14 22:14:20 2023", 1_700_000_060 - NOW),  # asctime, read as GMT
        ("99999999999", MAX_RETRY_AFTER),
    ],
)
def test_retry_after_reads_delta_seconds_and_every_http_date_form(
    value: str, expected: float
) -> None:
    assert retry_after({"Retry-After": value}, now=at(NOW)) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["1.5", "-3", "inf", "nan", "soon", "3 s", "", "٣"])
def test_retry_after_refuses_what_rfc_9110_does_not_allow(value: str) -> None:
    """Before, ``float()`` read ``inf``, ``nan``, ``1.5`` and ``-3`` (GigaChat read ``inf`` as a
    wait for ever; YandexGPT ignored the header)."""
    assert retry_after({"Retry-After": value}, now=at(NOW)) is None


def test_retry_after_ms_wins_and_bad_ms_falls_back_to_the_header() -> None:
    assert retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert retry_after({"retry-after-ms": "nan", "Retry-After": "9"}) == 9.0
    assert retry_after({}) is None


# -- one table for three adapters ----------------------------------------------------------------


def _openai(status: int, headers: dict[str, str], message: str) -> LlmgwError:
    body = orjson.dumps({"error": {"message": message, "type": "x", "param": None}})
    return map_status("up", status, headers, body, model="m1")


def _gigachat(status: int, headers: dict[str, str], message: str) -> LlmgwError:
    p = GigaChatProvider(
        ProviderConfig(name="up", kind="gigachat", base_url="http://127.0.0.1:9/api/v1"), "KEY"
    )
    return p._error(
        status, headers, orjson.dumps({"status": status, "message": message}), "t", "m1"
    )


def _yandex(status: int, headers: dict[str, str], message: str) -> LlmgwError:
    p = YandexGPTProvider(
        ProviderConfig(name="up", kind="yandexgpt", base_url="http://127.0.0.1:9", folder_id="b1g"),
        "AQVN-key",
    )
    grpc = {400: 3, 401: 16, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}.get(status, 2)
    body = {"grpcCode": grpc, "httpCode": status, "message": message, "details": []}
    return p._error(status, headers, orjson.dumps({"error": body}), None, "m1")


ADAPTERS = {"openai": _openai, "gigachat": _gigachat, "yandexgpt": _yandex}


TABLE = [
    (400, InvalidRequest, 400),
    (401, UpstreamError, 502),
    (403, UpstreamError, 502),
    (404, UpstreamModelNotFound, 404),
    (413, PayloadTooLarge, 413),
    (429, RateLimited, 429),
    (500, UpstreamError, 502),
    (503, UpstreamError, 502),
    (504, UpstreamTimeout, 504),
]


@pytest.mark.parametrize(
    ("adapter", "status", "cls", "http"),
    [
        (adapter, *row)
        for adapter in ADAPTERS
        for row in TABLE
        # Foundation Models answer an oversized prompt with INVALID_ARGUMENT (400), never 413.
        if not (adapter == "yandexgpt" and row[0] == 413)
    ],
)
def test_every_adapter_maps_a_status_the_same_way(
    adapter: str, status: int, cls: type[LlmgwError], http: int
) -> None:
    """An upstream 404 used to be a 502 with fallback in openai_compat and a 404 without fallback
    in GigaChat and YandexGPT; now it is ``UpstreamModelNotFound`` (404, fallback) everywhere."""
    err = ADAPTERS[adapter](status, {}, "something went wrong")
    assert type(err) is cls and err.http_status == http
    if status == 404:
        assert err.code == "model_not_found" and "'m1'" in err.message
    if status == 400:
        assert "something went wrong" in err.message  # the client's mistake is explained
    elif status != 429:
        assert "something went wrong" not in err.message


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_adapter_keeps_the_upstreams_retry_after(adapter: str) -> None:
    err = ADAPTERS[adapter](429, {"Retry-After": "12"}, "slow down")
    assert isinstance(err, RateLimited) and err.retry_after == 12.0


# -- YandexGPT: codes first, documented messages only inside INVALID_ARGUMENT ---------------------


def _yc(status: int, body: dict[str, Any]) -> LlmgwError:
    p = YandexGPTProvider(
        ProviderConfig(name="yc", kind="yandexgpt", base_url="http://127.0.0.1:9", folder_id="b1g"),
        "AQVN-key",
    )
    return p._error(status, {}, orjson.dumps(body), None, "yandexgpt-lite")


def test_yandex_grpc_code_decides_over_the_http_status_and_the_wording() -> None:
    # UNAVAILABLE behind a 400 is an upstream failure (fallback), whatever the message says.
    err = _yc(400, {"error": {"grpcCode": 14, "message": "bad folder model_uri", "details": []}})
    assert type(err) is UpstreamError and err.http_status == 502
    # google.rpc.Status shape: UNAUTHENTICATED
    err = _yc(401, {"code": 16, "message": "The apikey has expired", "details": []})
    assert type(err) is UpstreamError and "credentials" in err.message
    # the short shape (body that was not JSON): INVALID_ARGUMENT, the client's mistake
    short = {"error": "invalid character '}'", "code": 3, "message": "invalid character '}'"}
    err = _yc(400, short)
    assert type(err) is InvalidRequest and "invalid character" in err.message
    # DEADLINE_EXCEEDED
    assert type(_yc(500, {"error": {"grpcCode": 4, "message": "deadline"}})) is UpstreamTimeout


@pytest.mark.parametrize("message", ["invalid model_uri", "Failed to parse model URI"])
def test_yandex_unknown_model_uri_is_a_404_the_router_falls_back_on(message: str) -> None:
    err = _yc(400, {"error": {"grpcCode": 3, "httpCode": 400, "message": message}})
    assert isinstance(err, UpstreamModelNotFound) and err.http_status == 404


def test_yandex_folder_mismatch_is_the_gateways_configuration() -> None:
    msg = "Specified folder ID does not match with service account"
    err = _yc(400, {"error": {"grpcCode": 3, "httpCode": 400, "message": msg}})
    assert type(err) is UpstreamError and err.http_status == 502 and "folder_id" in (err.hint or "")


def test_yandex_gauge_quota_suggests_a_second_and_a_rate_quota_does_not() -> None:
    gauge = "ai.textGenerationCompletionSessionsCount.count gauge quota limit exceed: allowed 1 requests"
    rate = "ai.textGenerationCompletionRequestsPerHour.rate rate quota limit exceed: allowed 100 requests"
    g = _yc(429, {"error": {"grpcCode": 8, "httpCode": 429, "message": gauge}})
    r = _yc(429, {"error": {"grpcCode": 8, "httpCode": 429, "message": rate}})
    assert isinstance(g, RateLimited) and g.retry_after == 1.0
    assert isinstance(r, RateLimited) and r.retry_after is None


def test_gigachat_429_without_retry_after_suggests_a_second() -> None:
    """GigaChat limits concurrent calls (reference/gigachat.md §6): a slot frees up quickly."""
    err = _gigachat(429, {}, "Too many requests")
    assert isinstance(err, RateLimited) and err.retry_after == 1.0
    assert _openai(429, {}, "x").retry_after is None


def test_retry_after_date_from_an_adapter_is_seconds_from_now() -> None:
    err = _openai(429, {"Retry-After": formatdate(time.time() + 30, usegmt=True)}, "x")
    assert isinstance(err, RateLimited) and err.retry_after is not None
    assert 25 < err.retry_after <= 30
