"""Budgets and quotas through three real gateways (uvicorn on free ports) on one Redis.

Issue 13's must-show items: a budget crossed by concurrent traffic notifies exactly one 80 % and
one 100 % to a local webhook receiver, then every instance refuses with 402 ``budget_exceeded``;
per-user and per-version quotas are exact across three instances (like RL-2), and the same
three instances with per-process memory limits over-admit (the negative control).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from llmgw.budgets.store import BudgetStore
from llmgw.config import BudgetSettings, NotifySettings, RateLimitSettings, Settings
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

BODY: dict[str, Any] = {
    "model": "openai/gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
}
PRICED = {"currency": "RUB", "prices": {"gpt-4o-mini": {"input": 100000, "output": 100000}}}
"""0.1 RUB per token: a request costs a few roubles."""


@pytest.fixture
def gateways() -> Iterator[Callable[[Settings, int], list[Any]]]:
    from llmgw.emulators.runner import serve_in_thread
    from llmgw.server import create_app

    running: list[Any] = []

    def start(settings: Settings, n: int) -> list[Any]:
        servers = [serve_in_thread(create_app(settings)) for _ in range(n)]
        running.extend(servers)
        return servers

    yield start
    for s in running:
        s.stop()


def _shared(settings: Settings, redis_url: str, backend: str = "auto", **update: Any) -> Settings:
    return settings.model_copy(
        update={
            "redis_url": SecretStr(redis_url),
            # 5 s: three servers share this process's GIL on a loaded machine; a late answer must
            # not count as Redis down (the degraded local share would blur exactness).
            "ratelimit": RateLimitSettings(backend=backend, instances=3, redis_timeout=5.0),
            **update,
        }
    )


CHAT_TURN: dict[str, Any] = {"model": "openai/gpt-4o-mini", "message": "hi"}
"""The same call as ``BODY`` through ``POST /api/chat`` (a new conversation each time)."""


async def _burst(
    urls: list[str],
    secrets: list[str],
    n: int,
    body: dict[str, Any] = BODY,
    path: str = "/v1/chat/completions",
) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as c:
        gate = asyncio.Event()

        async def one(i: int) -> httpx.Response:
            await gate.wait()
            return await c.post(
                f"{urls[i % len(urls)]}{path}",
                json=body,
                headers={"Authorization": f"Bearer {secrets[i % len(secrets)]}"},
            )

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*tasks))


def test_a_budget_crossed_by_concurrent_traffic_notifies_once_per_threshold_then_stops_every_instance(
    make_settings: Callable[..., Settings],
    emulator: Any,
    test_engine: Engine,
    make_key: Callable[..., Any],
    redis_url: str,
    gateways: Any,
) -> None:
    key = make_key("budgeted")
    other = make_key("free")  # no budget: unaffected
    with WebhookReceiver() as hook:
        base = make_settings(emulator.url, provider=PRICED)
        settings = _shared(
            base,
            redis_url,
            notify=NotifySettings.model_validate(
                {"channels": {"hook": {"kind": "webhook", "url": hook.url + "/budget"}}}
            ),
            budgets=BudgetSettings(
                notify=["hook"],
                refresh_interval=0.2,
                redis_prefix=f"llmgw:test:budget:{uuid.uuid4().hex[:8]}",
            ),
        )
        # One request first (no budget yet) tells what a request costs.
        with httpx.Client(timeout=10) as c:
            usage = c.post(
                f"{emulator.url}/v1/chat/completions",
                json={**BODY, "model": "gpt-4o-mini"},
                headers={"Authorization": "Bearer sk-emulator-upstream-secret-0123456789"},
            ).json()["usage"]
        cost = Decimal(usage["prompt_tokens"] + usage["completion_tokens"]) / 10
        BudgetStore(test_engine).set_budget(
            "key", key.info.id, "day", "RUB", cost * 20, hard_stop=True
        )
        gws = gateways(settings, 3)
        urls = [g.url for g in gws]
        answers: list[httpx.Response] = []
        for _ in range(40):  # bursts of 30 concurrent requests until the budget is spent
            burst = asyncio.run(_burst(urls, [key.secret], 30))
            answers += burst
            if all(r.status_code == 402 for r in burst):
                break
            time.sleep(0.05)
        assert {r.status_code for r in answers} <= {200, 402, 429}
        held = [r for r in answers if r.status_code == 429]
        assert held, "requests beyond what the rest of the budget covers wait for those in flight"
        assert {r.json()["error"]["code"] for r in held} == {"budget_in_flight"}
        assert all(r.headers["retry-after"] == "1" for r in held)
        ok = sum(r.status_code == 200 for r in answers)
        assert ok >= 20  # the budget's worth was served
        # The overshoot is bounded: about one request per instance per update of the shared
        # figure (100-120% in runs on a loaded machine; this allows 150%). Before the holds
        # one burst was all admitted: 270% in the docs' run, 150% (30 of 20) in this one.
        with test_engine.connect() as conn:
            spent = conn.exec_driver_sql(
                "SELECT sum(cost) FROM usage WHERE key_id = ? AND status = 200",
                (key.info.id.hex,),
            ).scalar_one()
        print(f"spent {spent} of {cost * 20} ({ok} answered)")
        assert Decimal(str(spent)) <= cost * 30
        # Every instance refuses within a refresh or two of the spend reaching Redis (bounded
        # generously: a refresh round on a loaded 2-core machine can take seconds).
        deadline = time.monotonic() + 20
        refused: dict[str, httpx.Response] = {}
        with httpx.Client(timeout=10) as c:
            while len(refused) < 3 and time.monotonic() < deadline:
                for url in urls:
                    r = c.post(
                        f"{url}/v1/chat/completions",
                        json=BODY,
                        headers={"Authorization": f"Bearer {key.secret}"},
                    )
                    if r.status_code == 402:
                        refused[url] = r
                    else:
                        print("probe", url[-5:], r.status_code, r.text[:150])
                time.sleep(0.1)
            free = [
                c.post(
                    f"{url}/v1/chat/completions",
                    json=BODY,
                    headers={"Authorization": f"Bearer {other.secret}"},
                ).status_code
                for url in urls
            ]
        assert sorted(refused) == sorted(urls), "every instance refuses the spent key"
        assert free == [200, 200, 200]
        r = next(iter(refused.values()))
        err = r.json()["error"]
        assert err["code"] == "budget_exceeded" and err["type"] == "insufficient_quota"
        assert "resets at" in err["message"] and "RUB" in err["message"]
        assert 0 < int(r.headers["retry-after"]) <= 86_400
        assert r.headers["x-llmgw-budget-reset"].endswith("T00:00:00Z")
        # Both notices arrive (delivered in the background: wait, bounded), then a few more
        # refresh rounds on every instance bring no second one.
        deadline = time.monotonic() + 30
        while len(hook.bodies("/budget")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.6)
        notes = hook.bodies("/budget")
    assert sorted(n["data"]["threshold"] for n in notes) == [80, 100]
    assert all(n["event"] == "budget.threshold" for n in notes)
    assert {n["data"]["subject"] for n in notes} == {f"budgeted ({key.info.prefix})"}
    hundred = next(n for n in notes if n["data"]["threshold"] == 100)
    assert hundred["data"]["spent"] >= float(cost * 20)
    assert "refused" in hundred["text"]


def _quota_run(
    settings: Settings,
    redis_url: str,
    backend: str,
    gateways: Any,
    secrets: list[str],
    n: int,
    path: str = "/v1/chat/completions",
) -> list[int]:
    gws = gateways(_shared(settings, redis_url, backend), 3)
    body = CHAT_TURN if path == "/api/chat" else BODY
    urls = [g.url for g in gws]
    return [r.status_code for r in asyncio.run(_burst(urls, secrets, n, body, path))]


@pytest.mark.parametrize("backend", ["auto", "memory"])
def test_a_users_quota_is_exact_across_three_instances_and_all_their_keys(
    settings: Settings,
    test_engine: Engine,
    make_key: Callable[..., Any],
    redis_url: str,
    gateways: Any,
    backend: str,
) -> None:
    """RL-2 for a user's quota: 90 concurrent requests with two keys of one user with
    ``rpm = 20`` through three instances: exactly 20 through Redis; the negative control
    (per-process memory) lets each instance admit its own 20."""
    from llmgw.auth.users import UserService

    user = UserService(test_engine).create(f"q{uuid.uuid4().hex[:6]}@example.com")
    a, b = make_key("a", user=user.email), make_key("b", user=user.email)
    BudgetStore(test_engine).set_quota("user", user.id, "", 20, None)
    statuses = _quota_run(settings, redis_url, backend, gateways, [a.secret, b.secret], 90)
    if backend == "auto":
        assert statuses.count(200) == 20 and statuses.count(429) == 70
    else:
        assert statuses.count(200) == 60  # three instances, 20 each: what Redis prevents


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
@pytest.mark.parametrize("backend", ["auto", "memory"])
def test_a_version_quota_is_exact_across_three_instances(
    settings: Settings,
    test_engine: Engine,
    make_key: Callable[..., Any],
    redis_url: str,
    gateways: Any,
    backend: str,
    path: str,
) -> None:
    """A key's quota on one model version (``openai/gpt-4o-mini``): exactly 15 of 60 through
    three instances on Redis, 45 with per-process memory (the negative control); the same
    through ``/api/chat``, whose model is known only once its turn is prepared (it ignored
    version quotas before: 60 of 60)."""
    key = make_key("v")
    BudgetStore(test_engine).set_quota("key", key.info.id, "openai/gpt-4o-mini", 15, None)
    statuses = _quota_run(settings, redis_url, backend, gateways, [key.secret], 60, path)
    if backend == "auto":
        assert statuses.count(200) == 15 and statuses.count(429) == 45
    else:
        assert statuses.count(200) == 45


def test_a_budget_crossed_through_api_chat_holds_at_admission_then_refuses(
    make_settings: Callable[..., Settings],
    emulator: Any,
    test_engine: Engine,
    make_key: Callable[..., Any],
    redis_url: str,
    gateways: Any,
) -> None:
    """A conversation turn (``POST /api/chat``) holds its estimated cost at admission like
    ``/v1/chat/completions`` (priced at the model its body names): a burst of 30 turns on three
    instances against a budget smaller than one turn's estimate is answered once at a time, the
    others 429 ``budget_in_flight`` (before, turns held nothing: all 30 were answered); once a
    few turns (0.30 RUB each) have spent it, every instance refuses with 402
    ``budget_exceeded``."""
    key = make_key("chatter")
    settings = _shared(
        make_settings(emulator.url, provider=PRICED),
        redis_url,
        budgets=BudgetSettings(
            refresh_interval=0.2, redis_prefix=f"llmgw:test:budget:{uuid.uuid4().hex[:8]}"
        ),
    )
    BudgetStore(test_engine).set_budget(
        "key", key.info.id, "day", "RUB", Decimal(1), hard_stop=True
    )
    urls = [g.url for g in gateways(settings, 3)]
    burst = asyncio.run(_burst(urls, [key.secret], 30, CHAT_TURN, "/api/chat"))
    codes = [r.status_code for r in burst]
    # One is answered while the others wait on its hold; on a slow machine the burst may last
    # past its answer and flush, and one more goes (0.30 RUB a turn: four fit in 1.00 RUB).
    assert 1 <= codes.count(200) <= 4, codes
    refused = [r.json()["error"]["code"] for r in burst if r.status_code != 200]
    assert set(refused) <= {"budget_in_flight", "budget_exceeded"}
    assert "budget_in_flight" in refused
    deadline = time.monotonic() + 10
    spent: dict[str, httpx.Response] = {}
    answered = 1
    with httpx.Client(timeout=10) as c:
        while len(spent) < 3 and time.monotonic() < deadline:
            for url in urls:
                r = c.post(
                    f"{url}/api/chat",
                    json=CHAT_TURN,
                    headers={"Authorization": f"Bearer {key.secret}"},
                )
                assert r.status_code in (200, 402, 429), r.text
                answered += r.status_code == 200
                if r.status_code == 402:
                    spent[url] = r
            time.sleep(0.1)
    assert sorted(spent) == sorted(urls), "every instance refuses the spent key"
    assert answered <= 5  # 1.00 RUB at 0.30 a turn: four, and at most one more in flight
    assert {r.json()["error"]["code"] for r in spent.values()} == {"budget_exceeded"}
