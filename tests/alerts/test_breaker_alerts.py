"""The gateway's own provider-health transitions in the alert history (source ``llmgw``): a real
emulator stopped (the circuit opens: ``LlmgwCircuitOpen`` fires) and started again on the same
port (a probe closes the circuit: the same occurrence resolves)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from llmgw.alerts.internal import ALERTNAME, breaker_labels
from llmgw.alerts.payload import am_fingerprint
from llmgw.auth.keys import KeyService
from llmgw.config import Settings
from llmgw.emulators.openai import create_app as emulator_app
from llmgw.emulators.runner import serve_in_thread
from llmgw.storage.db import make_engine
from tests.alerts.test_classification import query, running, until

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _key(db_url: str) -> str:
    eng = make_engine(db_url)
    try:
        return KeyService(eng).create("breaker-test").secret
    finally:
        eng.dispose()


async def test_a_provider_going_down_and_up_fires_and_resolves_an_llmgw_alert(
    db_url: str, classifying_settings: Callable[..., Settings], llm: Any, cli: Any
) -> None:
    # A cooldown long enough that the fail-fast request below still meets the open circuit on
    # a loaded machine (0.3 s was not: it became the probe); the probe is waited for, bounded.
    routing = {"failure_threshold": 2, "cooldown": 1.0, "max_cooldown": 1.0, "max_retries": 0}
    settings = classifying_settings(db_url, mode="transparent", top={"routing": routing})
    auth = {"Authorization": f"Bearer {_key(db_url)}"}
    port = llm.port
    restarted: Any = None
    try:
        async with running(settings) as (_, c):
            assert (
                await c.post("/v1/chat/completions", json=CHAT, headers=auth)
            ).status_code == 200
            assert query(db_url, "SELECT id FROM alerts") == []  # healthy: nothing recorded

            await asyncio.to_thread(llm.server.stop)  # the provider goes away
            for _ in range(2):
                r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
                assert r.status_code >= 500
            # a circuit that is open fails fast: more requests add nothing to the history
            r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
            assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
            (fired,) = await until(
                lambda: query(db_url, "SELECT * FROM alerts WHERE source = 'llmgw'")
            )
            assert fired["alertname"] == ALERTNAME and fired["status"] == "firing"
            assert fired["labels"] == breaker_labels("openai", "gpt-4o-mini")
            assert fired["fingerprint"] == am_fingerprint(fired["labels"])
            assert "openai/gpt-4o-mini" in fired["annotations"]["summary"]

            restarted = serve_in_thread(emulator_app(), port=port)  # back on the same port
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # open (fails fast) until the cooldown ends; then the probe succeeds
                r = await c.post("/v1/chat/completions", json=CHAT, headers=auth)
                if r.status_code == 200:
                    break
                assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
                assert asyncio.get_running_loop().time() < deadline, "the probe never came"
                await asyncio.sleep(0.1)
            (resolved,) = await until(
                lambda: query(
                    db_url, "SELECT * FROM alerts WHERE source = 'llmgw' AND status = 'resolved'"
                )
            )
            assert resolved["id"] == fired["id"] and resolved["ends_at"] is not None
            events = await until(
                lambda: query(
                    db_url,
                    f"SELECT kind FROM alert_events WHERE alert_id = {fired['id']} ORDER BY id",
                )
            )
            kinds = [e["kind"] for e in events]
            assert kinds.count("fired") == 1 and kinds.count("resolved") == 1
            assert kinds.index("fired") < kinds.index("resolved")
            await until(lambda: query(db_url, "SELECT id FROM alert_jobs WHERE state = 'done'"))
        # the same history as Alertmanager's alerts: the CLI's (and API's) source filter
        env = {"LLMGW_DATABASE__URL": db_url}
        out = cli("alerts", "list", "--source", "llmgw", "--json", env=env)
        assert out.exit_code == 0, out.stderr
        listed = json.loads(out.stdout)["data"]
        assert [(a["id"], a["source"], a["status"]) for a in listed] == [
            (fired["id"], "llmgw", "resolved")
        ]
        out = cli("alerts", "list", "--source", "alertmanager", "--json", env=env)
        assert json.loads(out.stdout)["data"] == []
        (delivery,) = query(db_url, "SELECT receiver, payload FROM alert_deliveries LIMIT 1")
        assert delivery["receiver"] == "llmgw"
    finally:
        if restarted is not None:
            restarted.stop()


@pytest.mark.parametrize("change", ["open", "closed"])
def test_the_breaker_tells_only_real_transitions(change: str) -> None:
    from llmgw.routing.breaker import BreakerConfig, BreakerRegistry

    now = [0.0]
    heard: list[tuple[tuple[str, str], str]] = []
    reg = BreakerRegistry(BreakerConfig(failure_threshold=2, cooldown=1.0), clock=lambda: now[0])
    reg.listen(lambda b, what: heard.append((b.key, what)))
    b = reg.get("p", "m")
    b.record_failure()
    assert heard == []
    b.record_failure()
    assert heard == [(("p", "m"), "open")]
    now[0] = 2.0
    assert b.acquire()  # the half-open probe
    if change == "open":
        b.record_failure()  # a failed probe: the same outage, nothing new
        assert heard == [(("p", "m"), "open")]
    else:
        b.record_success()
        assert heard == [(("p", "m"), "open"), (("p", "m"), "closed")]
    reg.listen(None)
    assert b.listener is None
