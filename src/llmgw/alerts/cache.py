"""Where classifications are reused: Redis (with a TTL) when configured, else the database.

Both never raise: a failing cache is a miss (and a lost write), logged once per failure streak,
so classification goes on without it.

Both also hold the claims that make classification single-flight across instances: ``claim``
takes ``lock:<sha256 of the key>`` for ``ttl`` seconds if nobody holds it (Redis ``SET NX PX``;
the database: an insert, or the take-over of an expired claim, in the ``alert_cls_cache``
table), ``release`` gives it back. A cache that fails grants every claim (no coordination
rather than no classification).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.alerts.store import _insert
from llmgw.storage.alert_tables import AlertCacheEntry

__all__ = ["DatabaseCache", "RedisCache", "lock_key"]

log = logging.getLogger("llmgw.alerts")
CACHE: sa.Table = AlertCacheEntry.__table__  # type: ignore[attr-defined]


def lock_key(key: str) -> str:
    """The claim's key for a cache key (short, and never a cache key itself)."""
    return "lock:" + hashlib.sha256(key.encode()).hexdigest()


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


class _Quiet:
    """Logs the first failure of a streak only."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            log.warning(
                "%s unavailable (classifying without it): %s", self.what, type(exc).__name__
            )
        self.failing = True

    def ok(self) -> None:
        self.failing = False


def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class RedisCache:
    """``GET``/``SET EX`` on the gateway's Redis."""

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._quiet = _Quiet("the Redis classification cache")

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached result, or ``None`` (also when Redis fails)."""
        try:
            raw = await self._redis.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss
            self._quiet.failed(exc)
            return None
        self._quiet.ok()
        return _decode(raw)

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any] | None]:
        """``get`` of each of ``keys`` in one ``MGET`` (the worker's batch; all misses when
        Redis fails)."""
        if not keys:
            return {}
        try:
            raws = await self._redis.mget(keys)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss
            self._quiet.failed(exc)
            return dict.fromkeys(keys)
        self._quiet.ok()
        return {key: _decode(raw) for key, raw in zip(keys, raws, strict=True)}

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds (silently not, when Redis fails)."""
        try:
            await self._redis.set(key, orjson.dumps(value), ex=max(1, int(ttl)))
        except Exception as exc:  # noqa: BLE001 - a cache failure is a lost write
            self._quiet.failed(exc)
        else:
            self._quiet.ok()

    async def claim(self, key: str, ttl: float) -> str | None:
        """A token if this caller now holds ``key``'s claim for ``ttl`` seconds, else ``None``
        (another holds it). Redis failing: a token (classify without coordination)."""
        token = uuid.uuid4().hex
        try:
            got = await self._redis.set(lock_key(key), token, nx=True, px=max(1, int(ttl * 1000)))
        except Exception as exc:  # noqa: BLE001 - no coordination rather than no classification
            self._quiet.failed(exc)
            return token
        return token if got else None

    async def release(self, key: str, token: str) -> None:
        """Give the claim back (only if still ours)."""
        try:
            await self._redis.eval(_RELEASE, 1, lock_key(key), token)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            self._quiet.failed(exc)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class DatabaseCache:
    """The ``alert_cls_cache`` table (expired rows are ignored, and deleted by retention)."""

    def __init__(
        self, engine: Engine, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self.now = now
        self._quiet = _Quiet("the database classification cache")

    def _get(self, key: str) -> dict[str, Any] | None:
        c = CACHE.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(c.result).where(c.key == key, c.expires_at > self.now())
            ).first()
        return dict(row.result) if row is not None else None

    def _get_many(self, keys: list[str]) -> dict[str, dict[str, Any] | None]:
        c = CACHE.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.key, c.result).where(c.key.in_(keys), c.expires_at > self.now())
            ).all()
        found = {r.key: dict(r.result) for r in rows}
        return {key: found.get(key) for key in keys}

    def _set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        now = self.now()
        expires = now + timedelta(seconds=ttl)
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(CACHE)
                .where(CACHE.c.key == key)
                .values(result=value, created_at=now, expires_at=expires)
            )
            if not done.rowcount:
                conn.execute(
                    sa.insert(CACHE).values(
                        key=key, result=value, created_at=now, expires_at=expires
                    )
                )

    def _claim(self, key: str, ttl: float) -> str | None:
        now = self.now()
        token = uuid.uuid4().hex
        row = {"result": {"claim": token}, "created_at": now,
               "expires_at": now + timedelta(seconds=ttl)}  # fmt: skip
        c = CACHE.c
        with self.engine.begin() as conn:
            got = conn.execute(  # (an insert's rowcount is -1 on psycopg: ask for the row)
                _insert(conn, CACHE)
                .values(key=lock_key(key), **row)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(c.key)
            ).first()
            if got is None:  # held: take it over only once it expired
                got = conn.execute(
                    sa.update(CACHE)
                    .where(c.key == lock_key(key), c.expires_at <= now)
                    .values(**row)
                    .returning(c.key)
                ).first()
        return token if got is not None else None

    def _release(self, key: str, token: str) -> None:
        c = CACHE.c
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(c.result).where(c.key == lock_key(key))).all()
            if rows and (rows[0].result or {}).get("claim") == token:
                conn.execute(sa.delete(CACHE).where(c.key == lock_key(key)))

    async def claim(self, key: str, ttl: float) -> str | None:
        """A token if this caller now holds ``key``'s claim for ``ttl`` seconds, else ``None``."""
        try:
            return await asyncio.to_thread(self._claim, key, ttl)
        except Exception as exc:  # noqa: BLE001 - no coordination rather than no classification
            self._quiet.failed(exc)
            return uuid.uuid4().hex

    async def release(self, key: str, token: str) -> None:
        """Give the claim back (only if still ours)."""
        try:
            await asyncio.to_thread(self._release, key, token)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            self._quiet.failed(exc)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached result, or ``None`` (also when the database fails)."""
        try:
            value = await asyncio.to_thread(self._get, key)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss
            self._quiet.failed(exc)
            return None
        self._quiet.ok()
        return value

    async def get_many(self, keys: list[str]) -> dict[str, dict[str, Any] | None]:
        """``get`` of each of ``keys`` in one query (all misses when the database fails)."""
        if not keys:
            return {}
        try:
            found = await asyncio.to_thread(self._get_many, keys)
        except Exception as exc:  # noqa: BLE001 - a cache failure is a miss
            self._quiet.failed(exc)
            return dict.fromkeys(keys)
        self._quiet.ok()
        return found

    async def set(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        try:
            await asyncio.to_thread(self._set, key, value, ttl)
        except Exception as exc:  # noqa: BLE001 - a lost write (a concurrent insert, an outage)
            self._quiet.failed(exc)
        else:
            self._quiet.ok()
