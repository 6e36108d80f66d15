"""A seeded, realistic month of gateway usage with known problems planted in it (issue 13).

Office-hours traffic over 30 days from five keys of three users, on OpenAI (USD), GigaChat and
YandexGPT (RUB), priced from the bundled table, 30 % streamed. Planted, so recommendations can
be checked: ``openai/gpt-4o`` serves the same request sizes as the much cheaper
``openai/gpt-4o-mini``; ``yandex/yandexgpt:deprecated`` is still called next to ``:latest``;
``giga/GigaChat-Pro`` fails 9 % of its requests (502, billed for the partial answer); the key
``summariser`` hits ``max_tokens`` in a quarter of its answers; the key ``old-ci`` (created 60
days ago) made no request. Deterministic for a seed. Used by tests/unit/test_recommend.py, the
report tests and the captures in docs/.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.storage.tables import ApiKey, UsageRecord, User
from llmgw.usage.price_table import TABLE

END = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
"""The month is November 2026 (UTC): [END - 30 days, END)."""

# (provider, kind, model, version, weight, avg prompt, avg completion, error share)
ROUTES: tuple[tuple[str, str, str, str | None, int, int, int, float], ...] = (
    ("openai", "openai", "gpt-4o-mini", None, 30, 600, 200, 0.01),
    ("openai", "openai", "gpt-4o", None, 12, 620, 210, 0.01),
    ("giga", "gigachat", "GigaChat", None, 15, 250, 120, 0.01),
    ("giga", "gigachat", "GigaChat-Pro", None, 10, 1800, 400, 0.09),
    ("yandex", "yandexgpt", "yandexgpt-lite", "latest", 14, 300, 90, 0.01),
    ("yandex", "yandexgpt", "yandexgpt", "latest", 10, 1500, 350, 0.01),
    ("yandex", "yandexgpt", "yandexgpt", "deprecated", 5, 1450, 340, 0.01),
)
KEYS = ("web-app", "support-bot", "summariser", "analytics", "old-ci")
USERS = ("ann@example.com", "bob@example.com", "eve@example.com")


def _price(kind: str, model: str, version: str | None) -> tuple[Decimal, Decimal]:
    table = TABLE[kind]
    listed = table.get(f"{model}:{version}") or table[model]
    return listed.input, listed.output


def seed(engine: Engine, *, rows: int = 4000, seed: int = 13, days: int = 30) -> dict[str, Any]:
    """Users, keys and ``rows`` usage rows over the ``days`` before ``END`` (60: October too,
    for trends); returns ``{"keys": {name: id}, "end": END, "rows": [...]}``."""
    rnd = random.Random(seed)
    users = [uuid.UUID(int=rnd.getrandbits(128)) for _ in USERS]
    keys = {name: uuid.UUID(int=rnd.getrandbits(128)) for name in KEYS}
    owner = {name: users[i % len(users)] for i, name in enumerate(KEYS)}
    start = END - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(User.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": u,
                    "email": e,
                    "role": "user",
                    "disabled": False,
                    "created_at": start - timedelta(days=90),
                }
                for u, e in zip(users, USERS, strict=True)
            ],
        )
        conn.execute(
            sa.insert(ApiKey.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": k,
                    "name": name,
                    "user_id": owner[name],
                    "prefix": f"llmgw_{name[:4].upper()}{i:02d}",
                    "digest": f"{i:064d}",
                    "created_at": start - timedelta(days=30),
                }
                for i, (name, k) in enumerate(keys.items())
            ],
        )
    weights = [r[4] for r in ROUTES]
    busy = [n for n in KEYS if n != "old-ci"]
    out: list[dict[str, Any]] = []
    for i in range(rows):
        # office hours on weekdays, a trickle at night and at weekends
        while True:
            t = start + timedelta(seconds=rnd.uniform(0, days * 86400))
            weekday, hour = t.weekday(), t.hour
            p = 1.0 if weekday < 5 and 7 <= hour < 19 else 0.12
            if rnd.random() < p:
                break
        provider, kind, model, version, _, avg_p, avg_c, err = rnd.choices(ROUTES, weights)[0]
        name = rnd.choice(busy)
        prompt = max(1, int(rnd.gauss(avg_p, avg_p * 0.25)))
        completion = max(1, int(rnd.gauss(avg_c, avg_c * 0.25)))
        finish: str | None = "stop"
        if name == "summariser" and rnd.random() < 0.25:
            completion, finish = 512, "length"
        status, error = 200, None
        if rnd.random() < err:
            status, error, finish = 502, "upstream_error", None
            completion = completion // 4  # billed for what came before the failure
        p_in, p_out = _price(kind, model, version)
        cost = ((prompt * p_in + completion * p_out) / 1_000_000).quantize(Decimal("1e-10"))
        out.append(
            {
                "request_id": f"m{seed}-{i}",
                "created_at": t,
                "key_id": keys[name],
                "user_id": owner[name],
                "endpoint": "chat",
                "provider": provider,
                "model": model,
                "model_version": version,
                "stream": rnd.random() < 0.3,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "cost": cost,
                "latency_ms": rnd.lognormvariate(6.5, 0.5),
                "ttft_ms": None,
                "status": status,
                "error_type": error,
                "finish_reason": finish,
            }
        )
    out.sort(key=lambda r: r["created_at"])  # ids follow time, as a running server writes them
    with engine.begin() as conn:
        conn.execute(sa.insert(UsageRecord.__table__), out)  # type: ignore[attr-defined]
    return {"keys": keys, "end": END, "rows": out}


def currencies() -> dict[str, str]:
    """Provider -> currency, as the month's configuration would say."""
    return {"openai": "USD", "giga": "RUB", "yandex": "RUB"}


def config_toml() -> str:
    """A config naming the month's providers (so their currencies are known), for the CLI."""
    return (
        '[[providers]]\nname = "openai"\nkind = "openai"\nmodels = ["gpt-4o-mini", "gpt-4o"]\n\n'
        '[[providers]]\nname = "giga"\nkind = "gigachat"\nmodels = ["GigaChat", "GigaChat-Pro"]\n\n'
        '[[providers]]\nname = "yandex"\nkind = "yandexgpt"\nmodels = ["yandexgpt-lite", "yandexgpt"]\n'
    )
