"""Quotas per user and per model version: which extra buckets a request is admitted against.

``QuotaBook`` is built from the ``quotas`` table (``BudgetTracker`` re-reads it every
``budgets.refresh_interval``) and looked up on the hot path with one or two dict reads:

- a user's quota (``model`` empty): buckets ``rpm:uq:<user id>`` and ``tpm:uq:<user id>``,
  shared by all of the user's keys and tokens;
- a key's or a user's quota on one model version (``model`` set): buckets
  ``rpm:kv:<key id>:<model>`` / ``rpm:uv:<user id>:<model>`` (and ``tpm:``). ``model`` matches
  the request's first candidate as ``provider/model:version``, ``model:version``,
  ``provider/model`` or ``model`` (the most specific quota of a subject wins).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from llmgw.ratelimit import Limit

__all__ = ["PERIOD", "QuotaBook", "bucket_limit"]

PERIOD = 60.0
MAX_RATE = (2**51 - 1) // 60_000_000


def bucket_limit(rate: int) -> Limit:
    """A per-minute ``Limit`` for ``rate`` (clamped to what exact arithmetic holds)."""
    return Limit(min(rate, MAX_RATE), PERIOD)


Pair = tuple[Limit | None, Limit | None]


def _pair(rpm: int | None, tpm: int | None) -> Pair:
    return (bucket_limit(rpm) if rpm else None, bucket_limit(tpm) if tpm else None)


class QuotaBook:
    """The quotas in force, indexed for the hot path."""

    __slots__ = ("users", "versions")

    def __init__(self, rows: Iterable[Any] = ()) -> None:
        self.users: dict[uuid.UUID, Pair] = {}
        """User id -> (rpm, tpm) over all of the user's keys and tokens."""
        self.versions: dict[uuid.UUID, dict[str, tuple[str, Pair]]] = {}
        """Key or user id -> model name -> (bucket tag, (rpm, tpm))."""
        for q in rows:
            pair = _pair(q.rpm, q.tpm)
            if not q.model:
                if q.scope == "user":
                    self.users[q.subject_id] = pair
                continue
            tag = f"{'kv' if q.scope == 'key' else 'uv'}:{q.subject_id}:{q.model}"
            self.versions.setdefault(q.subject_id, {})[q.model] = (tag, pair)

    def __bool__(self) -> bool:
        return bool(self.users or self.versions)

    def items(self, key: Any, target: Any) -> list[tuple[str, str, Limit, str]]:
        """The extra buckets of a request of ``key`` to ``target``: (kind, bucket, limit, who)
        with kind ``rpm`` or ``tpm`` and ``who`` naming the limit in a refusal."""
        out: list[tuple[str, str, Limit, str]] = []
        user_id = key.user_id
        if user_id is not None:
            pair = self.users.get(user_id)
            if pair is not None:
                self._add(out, f"uq:{user_id}", pair, "this user's keys together")
        versions = self.versions
        if versions and target:
            for subject, whose in ((key.id, "this API key"), (user_id, "this user")):
                found = versions.get(subject) if subject is not None else None
                if not found:
                    continue
                for name in _names(target):
                    hit = found.get(name)
                    if hit is not None:
                        self._add(out, hit[0], hit[1], f"{whose} on {name}")
                        break
        return out

    @staticmethod
    def _add(out: list[tuple[str, str, Limit, str]], tag: str, pair: Pair, who: str) -> None:
        rpm, tpm = pair
        if rpm is not None:
            out.append(("rpm", f"rpm:{tag}", rpm, who))
        if tpm is not None:
            out.append(("tpm", f"tpm:{tag}", tpm, who))


def _names(t: Any) -> tuple[str, ...]:
    if t.version:
        v = f":{t.version}"
        return (t.qualified, f"{t.model}{v}", f"{t.provider}/{t.model}", t.model)
    return (t.qualified, t.model)
