"""Per-key rpm/tpm limits through real gateways (uvicorn on free ports), alone and three at once.

security.md §3.3 and RL-1..RL-5 at the server level: exact admission and 429s with ``Retry-After``
and ``x-ratelimit-*`` headers on one instance; a limit shared exactly by three instances through
Redis, with the per-instance negative control that must over-admit; token reservations that stop
concurrent requests overspending; Redis down: no 500s, the degraded local share, the gauge.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from llmgw.config import RateLimitSettings, Settings
from llmgw.errors import RateLimited

pytestmark = pytest.mark.timeout(120)

BODY: dict[str, Any] = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
}


def with_limits(settings: Settings, redis_url: str | None, **rl: Any) -> Settings:
    """``settings`` with a ``[ratelimit]`` section and ``redis_url``."""
    return settings.model_copy(
        update={
            "redis_url": SecretStr(redis_url) if redis_url else None,
            "ratelimit": RateLimitSettings(**rl),
        }
    )


@pytest.fixture
def gateways() -> Iterator[Callable[[Settings, int], list[Any]]]:
    """Start ``n`` gateway apps (each its own Gateway and limiter) on free ports."""
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    running: list[Any] = []

    def start(settings: Settings, n: int = 1, clock: Any = None) -> list[Any]:
        """``clock`` (a fake one) replaces the gateways' monotonic clock."""
        kw = {"clock": clock} if clock is not None else {}
        servers = [serve_in_thread(create_app(settings, **kw)) for _ in range(n)]
        running.extend(servers)
        return servers

    yield start
    for s in running:
        s.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def burst(urls: list[str], secret: str, n: int, body: dict[str, Any] = BODY) -> list[int]:
    """``n`` concurrent chat requests, round-robin over ``urls``; their statuses."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as c:
        gate = asyncio.Event()

        async def one(i: int) -> int:
            await gate.wait()
            r = await c.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=body)
            return r.status_code

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*tasks))


# -- RL-1: one instance, memory backend -------------------------------------------------------


def test_rpm_admits_exactly_the_limit_then_429_with_retry_after_and_headers(
    settings: Settings, make_key: Callable[..., Any], gateways: Any
) -> None:
    (gw,) = gateways(with_limits(settings, None), 1)
    key = make_key("rl", rpm=5)
    other = make_key("other")  # no limits: unaffected, and no x-ratelimit headers
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        answers = [  # a new X-Forwarded-For each time: the bucket is the key's, not an address's
            c.post(
                "/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {key.secret}", "X-Forwarded-For": f"10.0.0.{i}"},
            )
            for i in range(15)
        ]
        free = c.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {other.secret}"}
        )
    assert [r.status_code for r in answers] == [200] * 5 + [429] * 10
    first, fifth, refused = answers[0], answers[4], answers[5]
    assert first.headers["x-ratelimit-limit-requests"] == "5"
    assert first.headers["x-ratelimit-remaining-requests"] == "4"
    assert fifth.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 12  # one request per 12 s refills
    err = refused.json()["error"]
    assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
    assert "5 requests per minute" in err["message"]
    assert free.status_code == 200 and "x-ratelimit-limit-requests" not in free.headers


def test_after_retry_after_the_next_request_passes_and_openai_sees_rate_limit_error(
    settings: Settings, make_key: Callable[..., Any], gateways: Any, fake_clock: Any
) -> None:
    """RL-2 on a fake clock: time stands still during the burst, and moves by Retry-After."""
    (gw,) = gateways(with_limits(settings, None), 1, fake_clock)
    key = make_key("rl", rpm=60)  # one request a second refills
    statuses = asyncio.run(burst([gw.url], key.secret, 80))
    assert statuses.count(200) == 60 and statuses.count(429) == 20
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key.secret, max_retries=0)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**BODY)
    wait = int(info.value.response.headers["retry-after"])
    assert wait == 1
    fake_clock.advance(wait - 0.1)
    with pytest.raises(openai.RateLimitError):  # not a moment before Retry-After (0.9 s)
        client.chat.completions.create(**BODY)
    fake_clock.advance(0.15)
    assert client.chat.completions.create(**BODY).choices[0].message.content


@pytest.fixture
def tpm_gateway(
    make_settings: Callable[..., Settings],
    upstream_factory: Callable[..., Any],
    test_engine: Any,
    make_key: Callable[..., Any],
    gateways: Any,
) -> Callable[..., tuple[Any, Any]]:
    """A gateway in front of an emulator with ``upstream`` knobs, and a key with ``tpm = 1000``."""

    def start(**upstream: Any) -> tuple[Any, Any]:
        (gw,) = gateways(with_limits(make_settings(upstream_factory(**upstream).url), None), 1)
        return gw, make_key("rl", tpm=1000)

    return start


def test_tokens_are_reserved_so_concurrent_requests_cannot_overspend(
    tpm_gateway: Callable[..., tuple[Any, Any]],
) -> None:
    gw, key = tpm_gateway(latency_ms=400)  # the three requests overlap
    body = {**BODY, "max_tokens": 400}  # reserves ~401 tokens each: two fit in 1000, not three
    statuses = asyncio.run(burst([gw.url], key.secret, 3, body))
    assert sorted(statuses) == [200, 200, 429]
    # Both settled to their real (small) usage: the refund makes room again at once.
    deadline = time.monotonic() + 3
    while True:
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key.secret}"},
            timeout=10,
        )
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit-tokens"] == "1000"
    assert int(r.headers["x-ratelimit-remaining-tokens"]) < 1000 - 400


# -- RL-2 / RL-4: three instances --------------------------------------------------------------


@pytest.mark.redis
def test_three_instances_share_one_limit_through_redis_exactly(
    settings: Settings, make_key: Callable[..., Any], gateways: Any, redis_url: str
) -> None:
    # Three gateways share this process's GIL; a 150-request burst can hold a loop past the
    # default 0.1 s Redis budget, which (correctly) degrades that instance to its local share.
    # A 5 s budget (the most allowed) keeps this test about sharing, not about loop lag: 1 s
    # still timed out under xdist on a loaded two-core machine and degraded to local shares.
    servers = gateways(with_limits(settings, redis_url, instances=3, redis_timeout=5.0), 3)
    key = make_key("rl", rpm=50)
    started = time.monotonic()
    statuses = asyncio.run(burst([s.url for s in servers], key.secret, 150))
    # The algorithm's capacity over the burst: 50 at once plus one per 1.2 s that passed (a
    # loaded machine can stretch the burst past 1.2 s; exactly 50 holds only below that).
    capacity = 50 + int((time.monotonic() - started) / 1.2)
    assert 50 <= statuses.count(200) <= capacity
    assert statuses.count(200) + statuses.count(429) == 150


@pytest.mark.redis
def test_negative_control_per_instance_limits_over_admit(
    settings: Settings, make_key: Callable[..., Any], gateways: Any
) -> None:
    servers = gateways(with_limits(settings, None, backend="memory"), 3)
    key = make_key("rl", rpm=50)
    statuses = asyncio.run(burst([s.url for s in servers], key.secret, 150))
    assert statuses.count(200) == 150  # 3 x 50: the LiteLLM class of bug the Redis test catches


# -- RL-5: Redis down --------------------------------------------------------------------------


def test_redis_down_degrades_to_the_local_share_without_errors(
    settings: Settings, make_key: Callable[..., Any], gateways: Any
) -> None:
    down = f"redis://127.0.0.1:{closed_port()}/0"
    (gw,) = gateways(with_limits(settings, down, backend="redis", instances=3), 1)
    key = make_key("rl", rpm=30)
    started = time.monotonic()
    statuses = asyncio.run(burst([gw.url], key.secret, 40))
    assert time.monotonic() - started < 10
    assert 500 not in statuses and 502 not in statuses
    assert statuses.count(200) == math.ceil(30 / 3)  # this instance's share of the limit
    metrics = httpx.get(f"{gw.url}/metrics", timeout=10).text
    assert "llmgw_ratelimit_degraded 1.0" in metrics
    errors = next(
        line for line in metrics.splitlines() if line.startswith("llmgw_ratelimit_backend_errors")
    )
    assert float(errors.split()[-1]) >= 1


def test_embeddings_are_limited_too_and_huge_limits_are_enforced_as_the_largest_exact_rate(
    settings: Settings, make_key: Callable[..., Any], gateways: Any
) -> None:
    from llmgw.server.ratelimits import MAX_RATE

    (gw,) = gateways(with_limits(settings, None), 1)
    key = make_key("rl", rpm=2, tpm=2_000_000_000)  # the CLI accepts up to 2e9
    body = {"model": "openai/text-embedding-3-small", "input": ["one", "two"]}
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        auth = {"Authorization": f"Bearer {key.secret}"}
        answers = [c.post("/v1/embeddings", json=body, headers=auth) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-tokens"] == str(MAX_RATE)
    assert answers[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert answers[2].json()["error"]["code"] == "rate_limit_exceeded"


def test_estimates_and_reset_format() -> None:
    from llmgw.schemas import ChatRequest
    from llmgw.server.ratelimits import (
        DEFAULT_COMPLETION_RESERVE,
        _reset_text,
        estimate_chat_tokens,
        estimate_text_tokens,
    )

    assert estimate_text_tokens(["x" * 400]) == 101
    req = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 100}
    )
    assert estimate_chat_tokens(req) == 11 + 100
    req = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": ""}]})
    assert estimate_chat_tokens(req) == 1 + DEFAULT_COMPLETION_RESERVE
    assert [_reset_text(x) for x in (-1.5, 0, 0.2, 1, 58.1, 59.5, 60, 119.2, 3600, 3723)] == [
        "0s",
        "0s",
        "1s",
        "1s",
        "59s",
        "1m0s",
        "1m0s",
        "2m0s",
        "1h0m0s",
        "1h2m3s",
    ]


async def _stream(url: str, secret: str, body: dict[str, Any]) -> tuple[int, str]:
    """One streamed chat request: its status and the whole SSE text."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx.AsyncClient(timeout=30) as c,
        c.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r,
    ):
        return r.status_code, (await r.aread()).decode()


def test_concurrent_streams_cannot_overspend_tokens_and_settle_at_the_end(
    tpm_gateway: Callable[..., tuple[Any, Any]],
) -> None:
    gw, key = tpm_gateway(chunk_delay_ms=100)  # each stream lasts a while: they overlap
    body = {**BODY, "stream": True, "max_tokens": 400}

    async def three() -> list[tuple[int, str]]:
        return list(await asyncio.gather(*(_stream(gw.url, key.secret, body) for _ in range(3))))

    results = asyncio.run(three())
    assert sorted(status for status, _ in results) == [200, 200, 429]
    assert all(text.rstrip().endswith("data: [DONE]") for status, text in results if status == 200)
    deadline = time.monotonic() + 3  # settled in the background right after each stream ended
    while True:
        status, _ = asyncio.run(_stream(gw.url, key.secret, body))
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200


async def test_settlements_are_summed_per_bucket_and_applied_at_shutdown() -> None:
    import uuid
    from types import SimpleNamespace

    from llmgw.ratelimit import RateLimiter
    from llmgw.server.ratelimits import KeyLimits

    calls: list[int] = []

    class Counting(RateLimiter):
        async def adjust(self, bucket: str, limit: Any, delta: int) -> None:
            calls.append(delta)
            await super().adjust(bucket, limit, delta)

    limits = KeyLimits(Counting(RateLimitSettings(), None))
    key = SimpleNamespace(id=uuid.uuid4(), rpm=None, tpm=1000)
    grants = [await limits.admit(key, 100) for _ in range(10)]  # the whole minute reserved
    with pytest.raises(RateLimited, match="tokens per minute"):
        await limits.admit(key, 100)
    for g in grants:
        assert g is not None
        g.settle(10)  # each used 10 of its 100: 900 tokens to give back
    await limits.wait_settled()  # what Gateway.stop does
    assert calls == [-900]  # one adjustment for the bucket, not ten
    assert await limits.admit(key, 800) is not None


async def test_redis_backend_without_redis_url_fails_before_anything_starts(
    settings: Settings,
) -> None:
    from llmgw.errors import ConfigError
    from llmgw.server.state import Gateway

    gw = Gateway(with_limits(settings, None, backend="redis"))
    with pytest.raises(ConfigError, match="redis_url"):
        await gw.start()
    assert not hasattr(gw, "recorder") and not hasattr(gw, "engine")  # nothing left running


async def test_a_reservation_raised_after_admission_is_charged_and_settled() -> None:
    """``Grant.raise_to`` (``/api/chat``: admitted on its body, raised to the fitted history):
    the extra tokens are charged to the bucket without refusing the admitted request, so the
    next request is refused (RL-1 on tokens); settling replaces the raised reservation."""
    import uuid
    from types import SimpleNamespace

    from llmgw.ratelimit import RateLimiter
    from llmgw.server.ratelimits import KeyLimits

    limits = KeyLimits(RateLimiter(RateLimitSettings(), None))
    key = SimpleNamespace(id=uuid.uuid4(), rpm=None, tpm=1000)
    grant = await limits.admit(key, 100)
    assert grant is not None
    grant.raise_to(50)  # never lowers
    grant.raise_to(5000)  # at most the key's tpm
    assert grant.reserved == 1000
    await limits.wait_settled()
    with pytest.raises(RateLimited, match="tokens per minute"):
        await limits.admit(key, 100)
    grant.settle(100)  # it used 100: 900 given back
    await limits.wait_settled()
    assert await limits.admit(key, 800) is not None


async def test_admit_version_adds_the_versions_buckets_to_the_grant() -> None:
    """``KeyLimits.admit_version`` (``/api/chat`` once its model is known): the version quota's
    buckets join the admission's grant (tokens settled together; the tighter headers shown),
    a second call over the version's rpm is refused, and a key without a version quota passes
    its grant through untouched."""
    import uuid
    from types import SimpleNamespace

    from llmgw.ratelimit import RateLimiter
    from llmgw.routing.resolve import Target
    from llmgw.server.quotas import QuotaBook
    from llmgw.server.ratelimits import KeyLimits

    key = SimpleNamespace(id=uuid.uuid4(), user_id=None, rpm=100, tpm=None)
    plain = SimpleNamespace(id=uuid.uuid4(), user_id=None, rpm=100, tpm=None)
    limits = KeyLimits(RateLimiter(RateLimitSettings(), None))
    quota = SimpleNamespace(scope="key", subject_id=key.id, model="gpt-4o-mini", rpm=1, tpm=500)
    limits.set_quotas(QuotaBook([quota]), False)
    target = Target("openai", "gpt-4o-mini", None)
    grant = await limits.admit(key, 100, False)  # admission: the key's own rpm only
    assert grant is not None
    assert dict(grant.headers)["x-ratelimit-limit-requests"] == "100"
    same = await limits.admit_version(key, 200, target, grant)
    assert same is grant
    headers = dict(grant.headers)
    assert headers["x-ratelimit-limit-requests"] == "1"  # the version's: fewer left
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-tokens"] == "500"
    assert grant.reserved == 200
    with pytest.raises(RateLimited, match="on gpt-4o-mini"):
        await limits.admit_version(key, 200, target, await limits.admit(key, 100, False))
    other = await limits.admit(plain, 100, False)
    assert await limits.admit_version(plain, 100, target, other) is other
    assert await limits.admit_version(plain, 100, target, None) is None
    fresh = SimpleNamespace(id=key.id, user_id=None, rpm=None, tpm=None)
    limits2 = KeyLimits(RateLimiter(RateLimitSettings(), None))
    limits2.set_quotas(QuotaBook([quota]), False)
    alone = await limits2.admit_version(fresh, 10, target, None)  # no grant of its own
    assert alone is not None and alone.reserved == 10


async def test_a_keys_buckets_follow_its_limits_quotas_and_target() -> None:
    """``KeyLimits`` keeps a request's buckets per key object and target: a key whose rpm
    changes, new quotas (``set_quotas``) and another target each get their own buckets at
    once, never the ones kept for the previous request (RL-1 on each)."""
    import uuid
    from types import SimpleNamespace

    from llmgw.ratelimit import RateLimiter
    from llmgw.routing.resolve import Target
    from llmgw.server.quotas import QuotaBook
    from llmgw.server.ratelimits import KeyLimits

    user = uuid.uuid4()
    key = SimpleNamespace(id=uuid.uuid4(), user_id=user, rpm=2, tpm=None)
    mini, big = Target("openai", "gpt-4o-mini"), Target("openai", "gpt-4o")
    limits = KeyLimits(RateLimiter(RateLimitSettings(), None))
    for _ in range(2):
        assert await limits.admit(key, 10, mini) is not None
    with pytest.raises(RateLimited, match="2 requests per minute"):
        await limits.admit(key, 10, mini)
    key.rpm = 4  # the same key object, its limit raised: the bucket's time is the same
    with pytest.raises(RateLimited, match="4 requests per minute"):
        await limits.admit(key, 10, mini)
    key.id = uuid.uuid4()  # its id too (a new bucket)
    grant = await limits.admit(key, 10, mini)
    assert grant is not None and dict(grant.headers)["x-ratelimit-limit-requests"] == "4"
    key.rpm, key.tpm = None, 100  # tokens only now
    grant = await limits.admit(key, 60, mini)
    assert grant is not None and grant.reserved == 60
    with pytest.raises(RateLimited, match="100 tokens per minute"):
        await limits.admit(key, 60, mini)
    key.tpm = None
    assert await limits.admit(key, 10, mini) is None  # no limit left: nothing to step
    version = SimpleNamespace(scope="key", subject_id=key.id, model="gpt-4o-mini", rpm=1, tpm=None)
    limits.set_quotas(QuotaBook([version]), False)
    assert await limits.admit(key, 10, mini) is not None
    with pytest.raises(RateLimited, match="on gpt-4o-mini"):
        await limits.admit(key, 10, mini)
    assert await limits.admit(key, 10, big) is None  # the quota is on the other model
    quota = SimpleNamespace(scope="user", subject_id=user, model="", rpm=1, tpm=None)
    limits.set_quotas(QuotaBook([quota]), False)
    assert await limits.admit(key, 10, big) is not None
    with pytest.raises(RateLimited, match="this user's keys together"):
        await limits.admit(key, 10, mini)
    key.user_id = uuid.uuid4()  # moved to another user, without a quota
    assert await limits.admit(key, 10, mini) is None


async def test_the_headers_name_the_request_bucket_with_the_fewest_left() -> None:
    """In memory, a key's rpm with its user's and its version's quotas (request buckets only,
    the path that builds only the tightest decision): the ``x-ratelimit-*-requests`` headers are
    those of the bucket with the fewest requests left, a refusal names the bucket that refused
    and steps none of them."""
    import uuid
    from types import SimpleNamespace

    from llmgw.ratelimit import RateLimiter
    from llmgw.routing.resolve import Target
    from llmgw.server.quotas import QuotaBook
    from llmgw.server.ratelimits import KeyLimits

    user = uuid.uuid4()
    key = SimpleNamespace(id=uuid.uuid4(), user_id=user, rpm=100, tpm=None)
    mini = Target("openai", "gpt-4o-mini")
    limits = KeyLimits(RateLimiter(RateLimitSettings(), None))
    limits.set_quotas(
        QuotaBook(
            [
                SimpleNamespace(scope="user", subject_id=user, model="", rpm=5, tpm=None),
                SimpleNamespace(
                    scope="key", subject_id=key.id, model="gpt-4o-mini", rpm=3, tpm=None
                ),
            ]
        ),
        False,
    )
    seen = []
    for _ in range(3):
        grant = await limits.admit(key, 10, mini)
        assert grant is not None
        h = dict(grant.headers)
        seen.append((h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]))
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]  # the version's quota: fewest left
    with pytest.raises(RateLimited, match="this API key on gpt-4o-mini") as refused:
        await limits.admit(key, 10, mini)
    assert refused.value.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    other = Target("openai", "gpt-4o")  # no version quota there: the user's 5 has 2 left
    grant = await limits.admit(key, 10, other)
    assert grant is not None and dict(grant.headers)["x-ratelimit-remaining-requests"] == "1"
    assert dict(grant.headers)["x-ratelimit-limit-requests"] == "5"
