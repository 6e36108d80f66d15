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


Item = tuple[str, str, Limit, str]
"""(kind ``rpm``/``tpm``, bucket name, limit, who a refusal names)."""
Entry = list[Item]


def _entry(tag: str, rpm: int | None, tpm: int | None, who: str) -> Entry:
    """The buckets of one quota, built once (names and ``Limit``s are not made per request)."""
    items: list[Item] = []
    if rpm:
        items.append(("rpm", f"rpm:{tag}", bucket_limit(rpm), who))
    if tpm:
        items.append(("tpm", f"tpm:{tag}", bucket_limit(tpm), who))
    return items


class QuotaBook:
    """The quotas in force, indexed for the hot path."""

    __slots__ = ("_seen", "users", "versions")

    def __init__(self, rows: Iterable[Any] = ()) -> None:
        self.users: dict[uuid.UUID, Entry] = {}
        """User id -> the buckets over all of the user's keys and tokens."""
        self.versions: dict[uuid.UUID, dict[str, Entry]] = {}
        """Key or user id -> model name -> its buckets."""
        self._seen: dict[int, tuple[Any, str, Any, Any, Entry]] = {}
        for q in rows:
            if not q.model:
                if q.scope == "user":
                    who = "this user's keys together"
                    self.users[q.subject_id] = _entry(f"uq:{q.subject_id}", q.rpm, q.tpm, who)
                continue
            whose = "this API key" if q.scope == "key" else "this user"
            tag = f"{'kv' if q.scope == 'key' else 'uv'}:{q.subject_id}:{q.model}"
            entry = _entry(tag, q.rpm, q.tpm, f"{whose} on {q.model}")
            self.versions.setdefault(q.subject_id, {})[q.model] = entry

    def __bool__(self) -> bool:
        return bool(self.users or self.versions)

    def items(self, key: Any, target: Any) -> list[Item]:
        """The extra buckets of a request of ``key`` to ``target``: (kind, bucket, limit, who)
        with kind ``rpm`` or ``tpm`` and ``who`` naming the limit in a refusal."""
        user_id = key.user_id
        if not (self.versions and target):
            entry = self.users.get(user_id) if user_id is not None else None
            return [] if entry is None else entry  # read-only: the caller concatenates
        # Memoised per key object (the auth cache keeps one per key) and target: the version's
        # names are matched once, and no UUID is hashed (``UUID.__hash__`` is Python code).
        qualified = target.qualified
        seen = self._seen.get(id(key))
        if (
            seen is not None
            and seen[0] is key
            and seen[1] == qualified
            and seen[2] is user_id
            and seen[3] is key.id
        ):
            return seen[4]
        found: Entry = []
        entry = self.users.get(user_id) if user_id is not None else None
        if entry is not None:
            found += entry
        found += self.version_items(key, target)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[id(key)] = (key, qualified, user_id, key.id, found)  # holds ``key``: id stays
        return found

    def version_items(self, key: Any, target: Any) -> list[Item]:
        """The buckets of ``key``'s (and its user's) quotas on ``target``'s model version only:
        ``/api/chat`` steps them once its turn is prepared (its model is not known before)."""
        out: list[Item] = []
        user_id = key.user_id
        versions = self.versions
        if versions and target:
            for subject in (key.id, user_id):
                found = versions.get(subject) if subject is not None else None
                if not found:
                    continue
                for name in _names(target):
                    hit = found.get(name)
                    if hit is not None:
                        out += hit
                        break
        return out


def _names(t: Any) -> tuple[str, ...]:
    if t.version:
        v = f":{t.version}"
        return (t.qualified, f"{t.model}{v}", f"{t.provider}/{t.model}", t.model)
    return (t.qualified, t.model)
