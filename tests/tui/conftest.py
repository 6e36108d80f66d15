"""TUI test fixtures: an in-test ``AdminOps`` with fixed data and a fixed clock, and the app factory.

The snapshot tests need the same screen every run; ``FixtureOps`` keeps keys and users in memory
so the pilot tests can create, edit and revoke, and can be told to fail (``go_away``) to show
what a person sees when the server goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from textual.pilot import Pilot

from llmgw.admin.chat import ChatDelta, ChatDone, ChatEvent, ChatMessage, ChatOpened, ModelChoice
from llmgw.admin.ops import UNSET, Record, Unset
from llmgw.errors import NotFound, Unavailable
from llmgw.tui.app import LlmgwApp

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def clock() -> datetime:
    """The fixed clock of every TUI test."""
    return NOW


def _iso(when: datetime) -> str:
    return when.isoformat()


def _key(n: int, name: str, user: str | None, **extra: Any) -> Record:
    rec: Record = {
        "id": f"{n:08x}-0000-4000-8000-000000000000",
        "name": name,
        "prefix": f"sk-llmgw-{n:04x}",
        "user": user,
        "user_id": None,
        "status": "active",
        "created_at": _iso(NOW - timedelta(days=10 - n)),
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": _iso(NOW - timedelta(minutes=3 * n)),
        "rpm": None,
        "tpm": None,
        "models": None,
        "rotated_from": None,
    }
    rec.update(extra)
    return rec


class FixtureOps:
    """``AdminOps`` over fixed, in-memory records."""

    def __init__(self, *, mode: str = "local", role: str = "admin") -> None:
        self.mode = mode
        self.role = role
        self.fail: Exception | None = None
        self.calls: list[str] = []
        self.keys = [
            _key(1, "ci-pipeline", "ana@example.com", rpm=60, tpm=40000),
            _key(2, "chat-bot", "boris@example.com", models=["gigachat/GigaChat-2-Max"]),
            _key(3, "old-batch", None, status="revoked", revoked_at=_iso(NOW - timedelta(days=1))),
            _key(4, "notebook", "ana@example.com", expires_at=_iso(NOW + timedelta(days=30))),
        ]
        self.users: list[Record] = [
            {"id": "u1", "email": "ana@example.com", "name": "Ana", "role": "admin",
             "status": "active", "keys": 2, "created_at": _iso(NOW - timedelta(days=40))},
            {"id": "u2", "email": "boris@example.com", "name": "Boris", "role": "user",
             "status": "active", "keys": 1, "created_at": _iso(NOW - timedelta(days=20))},
            {"id": "u3", "email": "vera@example.com", "name": None, "role": "user",
             "status": "disabled", "keys": 0, "created_at": _iso(NOW - timedelta(days=5))},
        ]  # fmt: skip
        self.audit: list[Record] = [
            {"id": 2, "at": _iso(NOW - timedelta(hours=1)), "actor": "local:ops",
             "actor_kind": "local", "action": "keys.revoke", "target": "sk-llmgw-0003",
             "source": "cli", "remote_addr": None, "detail": None},
            {"id": 1, "at": _iso(NOW - timedelta(hours=2)), "actor": "ana@example.com",
             "actor_kind": "key", "action": "keys.create", "target": "sk-llmgw-0004",
             "source": "api", "remote_addr": "10.0.0.7", "detail": {"name": "notebook"}},
        ]  # fmt: skip
        self.secrets = 0
        self.windows: list[tuple[datetime | None, datetime | None]] = []

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def go_away(self) -> None:
        """Every call fails as an unreachable server would."""
        self.fail = Unavailable(
            "cannot reach http://127.0.0.1:8080", hint="is llmgw serve running?"
        )

    def whoami(self) -> Record:
        self._check("whoami")
        return {"actor": "local:ops", "actor_kind": "local", "role": self.role,
                "mode": self.mode, "url": "http://127.0.0.1:8080" if self.mode == "remote" else None}  # fmt: skip

    def keys_list(self, *, include_revoked: bool = False) -> list[Record]:
        self._check("keys_list")
        return [dict(k) for k in self.keys if include_revoked or k["status"] != "revoked"]

    def _find(self, ref: str) -> Record:
        for k in self.keys:
            if ref in (k["id"], k["prefix"]):
                return k
        raise NotFound(f"no key {ref}")

    def keys_show(self, ref: str) -> Record:
        self._check("keys_show")
        return dict(self._find(ref))

    def _secret(self, rec: Record) -> Record:
        self.secrets += 1
        return {**rec, "key": f"{rec['prefix']}.{'x' * 8}{self.secrets:04d}"}

    def keys_create(self, name: str, *, user: str | None = None, expires: timedelta | None = None,
                    rpm: int | None = None, tpm: int | None = None,
                    models: Sequence[str] | None = None) -> Record:  # fmt: skip
        self._check("keys_create")
        exp = _iso(NOW + expires) if expires else None
        rec = _key(len(self.keys) + 1, name, user, rpm=rpm, tpm=tpm, expires_at=exp,
                   models=list(models) if models else None, last_used_at=None)  # fmt: skip
        self.keys.append(rec)
        return self._secret(dict(rec))

    def keys_revoke(self, ref: str) -> Record:
        self._check("keys_revoke")
        rec = self._find(ref)
        rec.update(status="revoked", revoked_at=_iso(NOW))
        return dict(rec)

    def keys_rotate(self, ref: str) -> Record:
        self._check("keys_rotate")
        old = self._find(ref)
        old.update(status="revoked", revoked_at=_iso(NOW))
        new = {**old, **_key(len(self.keys) + 1, old["name"], old["user"])}
        new.update(rpm=old["rpm"], tpm=old["tpm"], models=old["models"], rotated_from=old["id"])
        self.keys.append(new)
        return self._secret(dict(new))

    def keys_update(self, ref: str, *, rpm: int | None | Unset = UNSET,
                    tpm: int | None | Unset = UNSET,
                    models: Sequence[str] | None | Unset = UNSET,
                    expires_at: datetime | None | Unset = UNSET) -> Record:  # fmt: skip
        self._check("keys_update")
        rec = self._find(ref)
        for name, value in (("rpm", rpm), ("tpm", tpm), ("models", models)):
            if value is not UNSET:
                rec[name] = list(value) if isinstance(value, list | tuple) else value
        if isinstance(expires_at, datetime) or expires_at is None:
            rec["expires_at"] = _iso(expires_at) if expires_at else None
        return dict(rec)

    def users_list(self) -> list[Record]:
        self._check("users_list")
        return [dict(u) for u in self.users]

    def _user(self, ref: str) -> Record:
        for u in self.users:
            if ref in (u["id"], u["email"]):
                return u
        raise NotFound(f"no user {ref}")

    def users_show(self, ref: str) -> Record:
        self._check("users_show")
        return dict(self._user(ref))

    def users_create(self, email: str, *, name: str | None = None, role: str = "user") -> Record:
        self._check("users_create")
        rec = {"id": f"u{len(self.users) + 1}", "email": email, "name": name, "role": role,
               "status": "active", "keys": 0, "created_at": _iso(NOW)}  # fmt: skip
        self.users.append(rec)
        return dict(rec)

    def users_disable(self, ref: str) -> Record:
        self._check("users_disable")
        self._user(ref)["status"] = "disabled"
        return dict(self._user(ref))

    def users_enable(self, ref: str) -> Record:
        self._check("users_enable")
        self._user(ref)["status"] = "active"
        return dict(self._user(ref))

    def users_set_role(self, ref: str, role: str) -> Record:
        self._check("users_set_role")
        self._user(ref)["role"] = role
        return dict(self._user(ref))

    def usage_stats(self, *, since: datetime | None = None, until: datetime | None = None,
                    by: str = "day", key: str | None = None, user: str | None = None,
                    model: str | None = None, provider: str | None = None,
                    status: int | None = None) -> list[Record]:  # fmt: skip
        self._check(f"usage_stats:{by}")
        self.windows.append((since, until))
        base = {"errors": 1, "prompt_tokens": 1200, "completion_tokens": 800,
                "avg_latency_ms": 420.5, "p95_latency_ms": 980.0}  # fmt: skip
        if by in ("hour", "day"):
            step = timedelta(hours=1) if by == "hour" else timedelta(days=1)
            fmt = "%Y-%m-%d %H:00" if by == "hour" else "%Y-%m-%d"
            count = 24 if by == "hour" else 7
            return [
                {by: (NOW - step * i).strftime(fmt), **base, "requests": 10 + (i * 7) % 23,
                 "total_tokens": 2000 + (i * 379) % 1500, "cost": f"{0.01 * (1 + i % 5):.10f}"}
                for i in range(count)
            ]  # fmt: skip
        labels: list[Any] = {
            "model": ["gigachat/GigaChat-2-Max", "yandex/yandexgpt-lite:rc", "openai/gpt-4o-mini"],
            "version": [None, "rc"],
            "provider": ["gigachat", "yandex", "openai"],
            "status": [200, 429, 502],
        }.get(by, ["a", "b"])  # type: ignore[assignment]
        rows = []
        for i, label in enumerate(labels):
            row = {**base, "requests": 120 - 40 * i, "total_tokens": 9000 - 2500 * i,
                   "cost": f"{0.5 - 0.1 * i:.10f}"}  # fmt: skip
            if by == "key":
                row.update(key=f"k{i}", key_name=["ci-pipeline", "chat-bot"][i],
                           key_prefix=f"sk-llmgw-000{i + 1}")  # fmt: skip
            elif by == "user":
                row.update(user=f"u{i + 1}", email=["ana@example.com", "boris@example.com"][i])
            else:
                row[by] = label
            rows.append(row)
        return rows

    def usage_recommend(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[Record]:
        self._check("usage_recommend")
        return []

    def usage_recent(self, *, limit: int = 100) -> list[Record]:
        self._check("usage_recent")
        out = []
        models = [("gigachat", "GigaChat-2-Max", 200), ("yandex", "yandexgpt-lite", 200),
                  ("openai", "gpt-4o-mini", 429), ("gigachat", "GigaChat-2-Max", 502)]  # fmt: skip
        for i in range(min(limit, 30)):
            provider, model, status = models[i % 4]
            out.append({
                "at": _iso(NOW - timedelta(seconds=7 * i)), "request_id": f"req-{i}",
                "key_prefix": f"sk-llmgw-000{1 + i % 2}", "key_id": None, "user_id": None,
                "endpoint": "/v1/chat/completions", "provider": provider, "model": model,
                "model_version": None, "stream": i % 2 == 0, "status": status,
                "error_type": None if status == 200 else "upstream_error",
                "latency_ms": 300.0 + 17 * i, "ttft_ms": 120.0 + i, "prompt_tokens": 40 + i,
                "completion_tokens": 0 if status != 200 else 100 + i,
                "total_tokens": 140 + 2 * i, "cost": "0.0004000000",
            })  # fmt: skip
        return out

    def models_catalog(self, *, refresh: bool = False) -> Record:
        self._check("models_catalog")
        return {"object": "list", "data": [], "providers": [], "ttl_seconds": 300}

    def providers_status(self) -> list[Record]:
        self._check("providers_status")
        live = self.mode == "remote"
        rows = [
            ("gigachat", "GigaChat-2-Max", "healthy", 412.3, 0.01, None),
            ("yandex", "yandexgpt-lite", "degraded", 1290.0, 0.12, "upstream 429: quota exceeded"),
            ("openai", "gpt-4o-mini", "down", None, 1.0, "connection refused"),
        ]
        out = []
        for i, (provider, model, state, latency, rate, error) in enumerate(rows):
            rec: Record = {"provider": provider, "model": model, "status": state,
                           "latency_ms": latency, "error_rate": rate, "last_error": error,
                           "updated_at": _iso(NOW - timedelta(seconds=20 + 40 * i)), "live": live}  # fmt: skip
            if live:
                rec.update(in_flight=3 - i, requests_per_min=42 - 14 * i,
                           history=[{"latency_ms": 300 + (j * 53 + i * 97) % 400,
                                     "error_rate": ((j + i) % 5) / 10} for j in range(20)])  # fmt: skip
            out.append(rec)
        return out

    def providers_test(self, name: str, *, model: str | None = None) -> Record:
        self._check(f"providers_test:{name}:{model}")
        if name == "openai":
            raise Unavailable("openai: connection refused by 127.0.0.1:9", hint="is it running?")
        return {"provider": name, "ok": True, "check": "chat", "latency_ms": 412.5, "model": model}

    def providers_stored(self) -> list[Record]:
        self._check("providers_stored")
        return [dict(r) for r in STORED]

    def aliases_list(self) -> list[Record]:
        self._check("aliases_list")
        base: Record = {"shadowed_by_config": False, "revision": None, "created_at": None,
                "updated_at": None, "unresolved": []}  # fmt: skip
        return [
            {**base, "name": "smart", "source": "config",
             "targets": ["gigachat/GigaChat-2-Max", "openai/gpt-4o-mini"]},
            {**base, "name": "fast", "source": "database", "revision": 2,
             "targets": [{"target": "vllm/llama-3.1-8b", "weight": 3.0},
                         {"target": "yandex/yandexgpt-lite", "weight": 1.0}]},
            {**base, "name": "rc", "source": "database", "revision": 1,
             "targets": ["yandex-rc/yandexgpt-lite:rc"],
             "unresolved": ["yandex-rc/yandexgpt-lite:rc"]},
        ]  # fmt: skip

    def providers_add(
        self, name: str, kind: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        self._check(f"providers_add:{name}")
        return {"name": name, "kind": kind, "enabled": True, "has_secret": secret is not None}

    def providers_edit(
        self, name: str, fields: dict[str, Any], *, secret: str | None = None
    ) -> Record:
        self._check(f"providers_edit:{name}")
        return {"name": name, **fields}

    def providers_set_enabled(self, name: str, enabled: bool) -> Record:
        self._check(f"providers_set_enabled:{name}:{enabled}")
        return {"name": name, "enabled": enabled}

    def providers_remove(self, name: str) -> Record:
        self._check(f"providers_remove:{name}")
        return {"name": name, "removed": True}

    def aliases_add(self, name: str, targets: Sequence[Any]) -> Record:
        self._check(f"aliases_add:{name}")
        return {"name": name, "targets": list(targets)}

    def aliases_edit(self, name: str, targets: Sequence[Any]) -> Record:
        self._check(f"aliases_edit:{name}")
        return {"name": name, "targets": list(targets)}

    def aliases_remove(self, name: str) -> Record:
        self._check(f"aliases_remove:{name}")
        return {"name": name, "removed": True}

    def providers_prices(self) -> list[Record]:
        from llmgw.admin.records import price_records
        from llmgw.config import ProviderConfig

        self._check("providers_prices")
        return price_records([
            ProviderConfig(name="gigachat", kind="gigachat", models=["GigaChat-2-Max"]),
            ProviderConfig(name="yandex", kind="yandexgpt", models=["yandexgpt-lite"]),
            ProviderConfig(name="openai", kind="openai", models=["gpt-4o-mini"]),
        ])  # fmt: skip

    def audit_list(self, *, since: datetime | None = None, limit: int = 100,
                   actor: str | None = None, action: str | None = None) -> list[Record]:  # fmt: skip
        self._check("audit_list")
        return [dict(a) for a in self.audit[:limit]]

    def budgets_list(self) -> list[Record]:
        self._check("budgets_list")
        return [dict(b) for b in BUDGETS]

    def budgets_show(self, ref: str) -> Record:
        return next(dict(b) for b in BUDGETS if b["id"].startswith(ref))

    def budgets_set(self, *, key: str | None = None, user: str | None = None,
                    period: str = "month", amount: str | Decimal, currency: str | None = None,
                    thresholds: str | list[int] = "80,100", hard_stop: bool = False) -> Record:  # fmt: skip
        raise NotImplementedError

    def budgets_delete(self, ref: str) -> Record:
        raise NotImplementedError

    def quotas_list(self) -> list[Record]:
        return []

    def quotas_set(self, *, key: str | None = None, user: str | None = None,
                   model: str | None = None, rpm: int | None = None,
                   tpm: int | None = None) -> Record:  # fmt: skip
        raise NotImplementedError

    def quotas_delete(self, ref: str) -> Record:
        raise NotImplementedError


STORED: list[Record] = [
    {"name": "vllm", "kind": "openai", "source": "database", "enabled": True,
     "shadowed_by_config": False, "has_secret": True, "revision": 3,
     "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-03T09:00:00Z",
     "base_url": "http://vllm.internal:8000/v1", "models": ["llama-3.1-8b", "qwen2.5-7b"],
     "max_concurrency": 64},
    {"name": "yandex-rc", "kind": "yandexgpt", "source": "database", "enabled": False,
     "shadowed_by_config": False, "has_secret": True, "revision": 1,
     "created_at": "2026-12-02T00:00:00Z", "updated_at": "2026-12-02T00:00:00Z",
     "folder_id": "b1g2example", "models": ["yandexgpt-lite:rc"]},
    {"name": "openai", "kind": "openai", "source": "database", "enabled": True,
     "shadowed_by_config": True, "has_secret": False, "revision": 1,
     "created_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-20T00:00:00Z"},
]  # fmt: skip
"""Stored providers: one serving, one disabled, one shadowed by the config file's ``openai``."""

BUDGETS: list[Record] = [
    {"id": "5c0ffee0-1234-4abc-8def-0123456789ab", "scope": "key", "subject_id": "k1",
     "subject": "ci-pipeline (sk-llmgw-0001)", "period": "day", "currency": "RUB",
     "amount": "1000.0000000000", "thresholds": [80, 100], "hard_stop": True,
     "period_start": "2026-12-03T00:00:00+00:00", "resets_at": "2026-12-04T00:00:00+00:00",
     "spent": "812.5000000000", "percent": 81.2, "notified": [80],
     "created_at": "2026-12-01T00:00:00+00:00", "updated_at": "2026-12-01T00:00:00+00:00"},
    {"id": "7d1e2f30-1234-4abc-8def-0123456789ab", "scope": "user", "subject_id": "u2",
     "subject": "boris@example.com", "period": "month", "currency": "USD",
     "amount": "250.0000000000", "thresholds": [50, 80, 100], "hard_stop": False,
     "period_start": "2026-12-01T00:00:00+00:00", "resets_at": "2027-01-01T00:00:00+00:00",
     "spent": "31.0400000000", "percent": 12.4, "notified": [],
     "created_at": "2026-12-01T00:00:00+00:00", "updated_at": "2026-12-01T00:00:00+00:00"},
]  # fmt: skip


class FixtureChat:
    """A ``ChatSource`` with a fixed catalog, conversations kept in memory and a fixed,
    word-by-word answer and figures (the live-server tests use the real one)."""

    url = "http://127.0.0.1:8080"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self.store: dict[str, dict[str, Any]] = {}
        self.stored: dict[str, list[ChatMessage]] = {}

    async def catalog(self) -> list[ModelChoice]:
        return [ModelChoice("gigachat/GigaChat-2-Max", "gigachat", 131072),
                ModelChoice("openai/gpt-4o-mini", "openai", 128000),
                ModelChoice("yandex/yandexgpt-lite", "yandex", 32768)]  # fmt: skip

    async def conversations(self) -> list[dict[str, Any]]:
        return [dict(r) for r in reversed(self.store.values())]

    async def messages(self, conversation_id: str) -> list[ChatMessage]:
        return list(self.stored[conversation_id])

    async def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        self.store[conversation_id]["title"] = title
        return dict(self.store[conversation_id])

    async def delete(self, conversation_id: str) -> None:
        del self.store[conversation_id], self.stored[conversation_id]

    async def turn(self, conversation_id: str | None, message: str, *, model: str | None,
                   system: str | None = None,
                   settings: Mapping[str, Any] | None = None) -> AsyncIterator[ChatEvent]:  # fmt: skip
        self.sent.append({"conversation_id": conversation_id, "message": message,
                          "model": model, "system": system, **(settings or {})})  # fmt: skip
        cid = conversation_id or f"c{len(self.store) + 1:07d}-0000-4000-8000-000000000000"
        yield ChatOpened(cid)
        words = f"Echo: {message}".split(" ")
        for i, word in enumerate(words):
            yield ChatDelta(word if i == 0 else " " + word)
        rec = self.store.setdefault(cid, {"id": cid, "title": message[:60], "messages": 0,
                                          "model": model, "system": None, "settings": {}})  # fmt: skip
        rec.update(model=model, system=system or rec["system"])
        rec["settings"] = {**rec["settings"], **(settings or {})}
        self.stored.setdefault(cid, []).extend(
            [ChatMessage("user", message), ChatMessage("assistant", " ".join(words), model)]
        )
        rec["messages"] += 2
        yield ChatDone(model=model, finish_reason="stop", prompt_tokens=12,
                       completion_tokens=len(words), latency_ms=812.4, ttft_ms=121.0)  # fmt: skip

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def ops() -> FixtureOps:
    """Fixed data in local mode (the provider_status table, no live state)."""
    return FixtureOps()


@pytest.fixture
def user_ops() -> FixtureOps:
    """A credential whose user is not an admin."""
    return FixtureOps(role="user")


@pytest.fixture
def remote_ops() -> FixtureOps:
    """Fixed data as a server answers it (live provider state with history)."""
    return FixtureOps(mode="remote")


@pytest.fixture
def make_app() -> Callable[..., LlmgwApp]:
    """Builds ``LlmgwApp`` on the given ops with the fixed clock and a long poll interval
    (tests poll with ``r`` or by switching screens, never by waiting)."""

    def make(ops: FixtureOps, poll_interval: float = 3600, **kwargs: Any) -> LlmgwApp:
        return LlmgwApp(ops, clock=clock, poll_interval=poll_interval, **kwargs)

    return make


async def settle(pilot: Pilot[None]) -> None:
    """Wait until every poll and action worker has finished and its message is handled."""
    app = pilot.app
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


@pytest.fixture
def wait() -> Callable[[Pilot[None]], Any]:
    """``await wait(pilot)``: workers done, messages handled."""
    return settle


def _alert(n: int, name: str, severity: str | None, status: str, minutes: int,
           cls: dict[str, Any] | None, **extra: Any) -> Record:  # fmt: skip
    labels = {"alertname": name, "job": "node", "instance": f"node{n}:9100"}
    if severity is not None:
        labels["severity"] = severity
    started = NOW - timedelta(minutes=minutes + 5)
    rec: Record = {
        "id": n, "fingerprint": f"{n:016x}", "source": "alertmanager", "alertname": name,
        "status": status, "severity": severity, "labels": labels,
        "annotations": {"summary": f"{name} on node{n}", "description": f"{name} for 5 minutes"},
        "starts_at": _iso(started),
        "ends_at": _iso(NOW - timedelta(minutes=minutes)) if status == "resolved" else None,
        "first_seen": _iso(started), "last_seen": _iso(NOW - timedelta(minutes=minutes)),
        "generator_url": "", "receiver": "llmgw", "notifications": 2, "fire_count": 1,
        "flapping": False, "acked_at": None, "acked_by": None, "note": None, "suppressed": None,
        "classification": cls or {"status": "pending"},
    }  # fmt: skip
    rec.update(extra)
    return rec


def _ai(severity: str, category: str, summary: str) -> dict[str, Any]:
    return {
        "status": "ok", "severity": severity, "category": category, "summary": summary,
        "probable_cause": "A batch job saturates the node's CPU every night at 03:00.",
        "recommendations": ["Move the batch job to the spare pool",
                            "Raise the CPU limit of the node exporter's pod"],
        "confidence": 0.82, "model": "openai/gpt-4o-mini", "prompt_version": "v1",
        "classified_at": _iso(NOW - timedelta(minutes=1)), "latency_ms": 812.0,
        "cache_hit": False, "ai_generated": True,
    }  # fmt: skip


def _publications() -> list[Record]:
    """The fire sent to PagerDuty, the resolve given up after three 400s (as
    ``llmgw.alerts.publishers.records.publications`` returns them)."""
    row = {"target": "pd-db", "type": "pagerduty", "next_at": None}
    return [
        {**row, "action": "fire", "state": "sent", "external_id": "llmgw-3f2a9c1e7b",
         "http_status": 202, "attempts": 1, "error": None,
         "updated_at": _iso(NOW - timedelta(minutes=94))},
        {**row, "action": "resolve", "state": "failed", "external_id": None,
         "http_status": 400, "attempts": 3, "error": "HTTP 400: Invalid routing key",
         "updated_at": _iso(NOW - timedelta(minutes=89))},
    ]  # fmt: skip


class FixtureAlerts:
    """An ``AlertSource`` over fixed alerts: every severity, firing and resolved, classified,
    pending and failed; ``ack`` and ``reclassify`` change them as the server would."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self.alerts: list[Record] = [
            _alert(7, "HighCPU", "critical", "firing", 1,
                   _ai("critical", "resource_saturation", "CPU of node7 pinned at 98%"),
                   fire_count=4, flapping=True),
            _alert(6, "DiskFull", "warning", "firing", 3,
                   _ai("warning", "capacity", "/var on node6 will be full in 2 hours")),
            _alert(5, "ApiErrors", "error", "firing", 6, {"status": "timeout"}),
            _alert(4, "CertExpiry", "info", "firing", 12, None, suppressed={
                "state": "silenced", "inhibited_by": [], "checked_at": _iso(NOW),
                "silenced_by": [{"id": "5f1c0a2e-7d4b", "created_by": "ana@example.com",
                                 "comment": "renewal booked",
                                 "ends_at": _iso(NOW + timedelta(days=2))}]}),
            _alert(3, "HighLatency", "warning", "resolved", 30,
                   _ai("warning", "latency", "p99 latency above 2 s on the API"),
                   acked_at=_iso(NOW - timedelta(minutes=35)), acked_by="ana@example.com",
                   note="deploy rolled back"),
            _alert(2, "NodeDown", "critical", "resolved", 90,
                   _ai("critical", "availability", "node2 stopped answering scrapes"),
                   publications=_publications()),
            _alert(1, "Watchdog", None, "firing", 120, {"status": "skipped"}),
        ]  # fmt: skip

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail

    def _find(self, alert_id: int) -> Record:
        for a in self.alerts:
            if a["id"] == alert_id:
                return a
        raise NotFound(f"no alert {alert_id}")

    def search(self, *, status: str | None = None, severity: str | None = None,
               text: str | None = None, limit: int = 200) -> dict[str, Any]:  # fmt: skip
        self._check(f"search:{status}:{severity}:{text}")
        out = []
        for a in self.alerts:
            blob = " ".join([a["alertname"], *(f"{k}={v}" for k, v in a["labels"].items()),
                             *a["annotations"].values()]).lower()  # fmt: skip
            if status and a["status"] != status or severity and a["severity"] != severity:
                continue
            if text and text.lower() not in blob:
                continue
            out.append(dict(a))
        return {"object": "list", "data": out[:limit], "next_cursor": None}

    def show(self, alert_id: int) -> dict[str, Any]:
        self._check(f"show:{alert_id}")
        a = self._find(alert_id)
        timeline = [{"at": a["starts_at"], "kind": "fired", "actor": None, "detail": None}]
        cls = a["classification"]
        if cls.get("status") == "ok":
            timeline.append({"at": cls["classified_at"], "kind": "classified", "actor": "llm",
                             "detail": {"status": "ok", "severity": cls["severity"],
                                        "category": cls["category"], "model": cls["model"]}})  # fmt: skip
        if a["status"] == "resolved":
            timeline.append({"at": a["ends_at"], "kind": "resolved", "actor": None, "detail": None})
        if a["acked_at"]:
            timeline.append({"at": a["acked_at"], "kind": "acknowledged", "actor": a["acked_by"],
                             "detail": {"note": a["note"]} if a["note"] else None})  # fmt: skip
        return {**a, "timeline": timeline, "jobs": []}

    def ack(self, alert_id: int, note: str | None) -> dict[str, Any]:
        self._check(f"ack:{alert_id}:{note}")
        a = self._find(alert_id)
        if a["acked_at"] is None:
            a.update(acked_at=_iso(NOW), acked_by="local:ops")
        if note:
            a["note"] = note
        return dict(a)

    def reclassify(self, alert_id: int) -> dict[str, Any]:
        self._check(f"reclassify:{alert_id}")
        a = self._find(alert_id)
        a["classification"] = {**a["classification"], "status": "pending"}
        return dict(a)


@pytest.fixture
def alerts() -> FixtureAlerts:
    """Fixed alerts for the Alerts screen."""
    return FixtureAlerts()
