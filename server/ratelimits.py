"""Per-key request and token limits (``rpm``/``tpm`` of an API key or a token) for the routes.

A key's ``rpm`` is a GCRA bucket of one unit per request; its ``tpm`` a bucket of tokens. A
request reserves an estimate of its tokens when it is admitted (the prompt's characters / 4 plus
its ``max_tokens``, or ``DEFAULT_COMPLETION_RESERVE`` when it sets none, at most the key's
``tpm``) and settles the difference with the upstream's usage when it ends; a request that ends
without usage keeps its reservation. Both buckets refill continuously over a minute and hold a
minute's worth (see docs/ratelimits.md). Keys without limits cost one attribute check.

Answers carry OpenAI's ``x-ratelimit-*`` headers for each limit the key has; a refused request
gets 429 with ``Retry-After`` and the same headers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from typing import Any

from llmgw.errors import RateLimited
from llmgw.ratelimit import Decision, Limit, RateLimiter
from llmgw.server.auth import TokenKey
from llmgw.server.quotas import QuotaBook

__all__ = [
    "DEFAULT_COMPLETION_RESERVE",
    "Grant",
    "KeyLimits",
    "estimate_chat_tokens",
    "estimate_text_tokens",
]

PERIOD = 60.0
MAX_RATE = (2**51 - 1) // 60_000_000
"""The largest per-minute rate a bucket holds exactly (``Limit``'s bound); keys may store more
(up to 2e9), which is enforced as this: about 37.5 million per minute, in effect no limit."""
SETTLE_SECONDS = 0.02
"""How long token settlements are summed before one adjustment per bucket is applied."""
DEFAULT_COMPLETION_RESERVE = 256
"""Tokens reserved for the answer of a chat request that sets no ``max_tokens``."""
_WHOSE = {
    "user": "this user's access tokens",
    "client": "this client's access tokens",
    "pat": "this personal access token",
}
"""Who a refusal names, by the bucket's kind (``TokenKey.bucket``); a key's is its id."""


def estimate_text_tokens(texts: Iterable[str]) -> int:
    """A cheap upper-leaning estimate: about four characters per token, at least one."""
    return max(1, sum(len(t) for t in texts) // 4 + 1)


def _message_texts(messages: Iterable[Any]) -> Iterable[str]:
    for m in messages:
        content = getattr(m, "content", None)
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                text = getattr(part, "text", None)
                if isinstance(text, str):
                    yield text


def estimate_chat_tokens(req: Any) -> int:
    """Prompt estimate plus the answer's cap (``max_completion_tokens`` or ``max_tokens``)."""
    prompt = estimate_text_tokens(_message_texts(req.messages))
    cap = getattr(req, "max_completion_tokens", None) or getattr(req, "max_tokens", None)
    return prompt + (cap if isinstance(cap, int) and cap > 0 else DEFAULT_COMPLETION_RESERVE)


_SECONDS = tuple(f"{s}s" for s in range(60))


def _reset_text(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``1h2m3s`` (whole seconds, rounded up)."""
    s = math.ceil(seconds)
    if s < 60:  # a minute's bucket: always, unless in debt
        return _SECONDS[s if s > 0 else 0]
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    return f"{m}m{sec}s"


_NAMES = {
    kind: (
        f"x-ratelimit-limit-{kind}",
        f"x-ratelimit-remaining-{kind}",
        f"x-ratelimit-reset-{kind}",
    )
    for kind in ("requests", "tokens")
}


def _headers(kind: str, d: Decision) -> list[tuple[str, str]]:
    limit, remaining, reset = _NAMES[kind]
    return [
        (limit, str(d.limit)),
        (remaining, str(d.remaining)),
        (reset, _reset_text(d.reset_after)),
    ]


_LIMITS: dict[int, Limit] = {}


def _limit(rate: int) -> Limit:
    """The per-minute ``Limit`` of ``rate``, memoised (``Limit()`` validates: ~1 µs)."""
    found = _LIMITS.get(rate)
    if found is None:
        if len(_LIMITS) > 10_000:
            _LIMITS.clear()
        found = _LIMITS[rate] = Limit(min(rate, MAX_RATE), PERIOD)
    return found


def _tighter(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers ``a`` with each kind's three headers taken from ``b`` where ``b`` has fewer left."""
    out = dict(a)
    theirs = dict(b)
    for kind in ("requests", "tokens"):
        rem = f"x-ratelimit-remaining-{kind}"
        if rem in theirs and (rem not in out or int(theirs[rem]) < int(out[rem])):
            for h in ("limit", "remaining", "reset"):
                name = f"x-ratelimit-{h}-{kind}"
                out[name] = theirs[name]
    return list(out.items())


def _tightest(
    items: list[tuple[str, str, Limit, str]], decisions: list[Decision]
) -> list[tuple[str, str]]:
    """OpenAI's headers for the requests and the tokens: of each kind, the bucket with the
    fewest units left (a refused one first)."""
    if len(decisions) == 1:  # a key's own rpm (or tpm) alone: the common case
        return _headers("requests" if items[0][0] == "rpm" else "tokens", decisions[0])
    rpm = tpm = None
    for item, d in zip(items, decisions, strict=True):
        if item[0] == "rpm":
            if rpm is None or (
                rpm.allowed > d.allowed
                or (rpm.allowed == d.allowed and rpm.remaining > d.remaining)
            ):
                rpm = d
        elif tpm is None or (
            tpm.allowed > d.allowed or (tpm.allowed == d.allowed and tpm.remaining > d.remaining)
        ):
            tpm = d
    headers: list[tuple[str, str]] = []
    if rpm is not None:
        headers += _headers("requests", rpm)
    if tpm is not None:
        headers += _headers("tokens", tpm)
    return headers


_Plan = tuple[
    Any,
    Any,
    QuotaBook,
    "int | None",
    "int | None",
    Any,
    Any,
    list[tuple[str, str, Limit, str]],
    "list[tuple[str, Limit, int]] | None",
]
"""``KeyLimits._plan``: (key, target, quota book, rpm, tpm, key id, user id, items, steps or
``None``): what the items were made from, then the items."""


def _admitted(
    items: list[tuple[str, str, Limit, str]], decisions: list[Decision]
) -> list[tuple[str, str]]:
    """``_tightest`` when every bucket allowed (the request path): the fewest units left."""
    if len(decisions) == 1:
        return _headers("requests" if items[0][0] == "rpm" else "tokens", decisions[0])
    rpm = tpm = None
    for item, d in zip(items, decisions, strict=True):
        if item[0] == "rpm":
            if rpm is None or d.remaining < rpm.remaining:
                rpm = d
        elif tpm is None or d.remaining < tpm.remaining:
            tpm = d
    if rpm is None:
        return [] if tpm is None else _headers("tokens", tpm)
    if tpm is None:
        return _headers("requests", rpm)
    return _headers("requests", rpm) + _headers("tokens", tpm)


class Grant:
    """An admitted request's reservation: its response headers, and the token settlement."""

    __slots__ = ("headers", "holds", "limits", "settled", "tpm", "verdicts")

    def __init__(
        self,
        limits: KeyLimits,
        tpm: list[tuple[str, Limit, int]],
        headers: list[tuple[str, str]],
        holds: list[Any] | None = None,
    ) -> None:
        self.limits = limits
        self.tpm = tpm
        """The token buckets: (bucket, limit, tokens reserved in it)."""
        self.holds = holds
        """What the budgets' hard stops hold for this request (given back when it settles)."""
        self.headers: list[tuple[str, str]] = headers
        self.settled = False
        self.verdicts: list[Any] | None = None
        """Redis's answers for the budgets asked with the buckets (``KeyLimits._step``)."""

    @property
    def reserved(self) -> int:
        """Tokens held: the largest reservation in any token bucket (0 without one)."""
        return max((held for _, _, held in self.tpm), default=0)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers as ASGI header pairs."""
        return [(k.encode("ascii"), v.encode("ascii")) for k, v in self.headers]

    def raise_to(self, tokens: int) -> None:
        """Raise the reservation to ``tokens`` (at most each bucket's ``tpm``), charged to the
        buckets without a refusal: what an admitted request turned out to need before its
        upstream call (``/api/chat``: the fitted history, known only after admission). Never
        lowers it."""
        if not self.tpm or self.settled:
            return
        for i, (bucket, limit, held) in enumerate(self.tpm):
            delta = min(tokens, limit.rate) - held
            if delta > 0:
                self.tpm[i] = (bucket, limit, held + delta)
                self.limits.adjust_later(bucket, limit, delta)

    def settle(self, total_tokens: int | None) -> None:
        """Replace the reservation by what the request used (once; ``None`` keeps it)."""
        if self.settled:
            return
        self.settled = True
        if self.holds is not None:  # its cost is charged by now (``Call.finish``)
            self.limits.budgets.release(self.holds)
        if not self.tpm or total_tokens is None:
            return
        for bucket, limit, held in self.tpm:
            delta = total_tokens - held
            if delta:
                self.limits.adjust_later(bucket, limit, delta)


class KeyLimits:
    """Admits requests against their key's ``rpm`` and ``tpm``, the quotas of its user and of
    the model version (``server/quotas.py``), and the budgets' hard stops, through one
    ``RateLimiter`` call."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._shared = limiter.backend == "redis"
        """Budgets are checked and held in the limiter's Redis script (else in memory)."""
        self._memory_step = limiter.memory_step
        """The memory backend's step, called without a coroutine (``None`` with Redis)."""
        self._memory_tightest = limiter.memory_tightest
        """The memory backend's step that builds only the tightest bucket's decision when it
        admits (request buckets only: the key's rpm, its user's and the version's quotas)."""
        self.rejected = {"requests": 0, "tokens": 0}
        self.quotas = QuotaBook()
        """Per-user and per-version quotas (replaced by ``set_quotas``)."""
        self.budgets: Any = None
        """The ``BudgetTracker`` whose ``check`` runs before admission (hard stops)."""
        self.extra = False
        """Some quota or hard-stop budget exists: the pipeline calls ``admit`` for keys without
        limits of their own only then (one attribute read otherwise)."""
        self.budgets_hard = False
        """Some budget has a hard stop (``/api/chat`` then prices the hold at admission)."""
        # Settlements are summed per bucket and applied by one flush every SETTLE_SECONDS: a
        # task per request cost ~24 µs, and with Redis one round trip per request.
        self._pending: dict[tuple[str, Limit], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._plans: dict[int, _Plan] = {}

    def set_quotas(self, book: QuotaBook, hard_budgets: bool) -> None:
        """Install the quotas read from the database, and whether budgets can refuse."""
        self.quotas = book
        self.extra = bool(book) or hard_budgets
        self.budgets_hard = hard_budgets

    def _plan(self, key: Any, target: Any) -> _Plan:
        """The buckets of a request of ``key`` to ``target`` (the key's own, then its user's
        and the version's quotas) and, when none counts tokens, its limiter steps (bucket,
        limit, 1). Memoised per key object (the auth cache keeps one per key), target and
        quota book: a request builds no bucket name (``str(UUID)`` is Python code) and no list."""
        rpm, tpm, quotas = key.rpm, key.tpm, self.quotas
        plan = self._plans.get(id(key))
        if (
            plan is not None
            and plan[0] is key
            and plan[1] is target
            and plan[2] is quotas
            and plan[3] == rpm
            and plan[4] == tpm
            and plan[5] is key.id
            and (not quotas or plan[6] is key.user_id)  # the quotas' buckets depend on it
        ):
            return plan
        items: list[tuple[str, str, Limit, str]] = []
        if rpm or tpm:
            key_id = key.bucket if type(key) is TokenKey else str(key.id)
            whose = _WHOSE.get(key_id.partition(":")[0], "this API key")
            if rpm:
                items.append(("rpm", f"rpm:{key_id}", _limit(rpm), whose))
            if tpm:
                items.append(("tpm", f"tpm:{key_id}", _limit(tpm), whose))
        if quotas:
            items += quotas.items(key, target)
        steps = None
        if all(kind == "rpm" for kind, _, _, _ in items):
            steps = [(b, lim, 1) for _, b, lim, _ in items]
        user_id = key.user_id if quotas else None
        plan = (key, target, quotas, rpm, tpm, key.id, user_id, items, steps)
        if len(self._plans) > 10_000:
            self._plans.clear()
        self._plans[id(key)] = plan  # holds ``key``: its id is not reused while memoised
        return plan

    async def admit(
        self, key: Any, tokens: int = 0, target: Any = None, price: Any = None
    ) -> Grant | None:
        """Admit one request of ``key`` (its ``id``, ``user_id``, ``rpm``, ``tpm``) of about
        ``tokens`` tokens to ``target`` (its first candidate), or raise ``RateLimited`` (429)
        or ``BudgetExceeded`` (402).

        ``None`` when nothing limits the request. Every bucket (the key's, its user's quota,
        the model version's) is stepped in one call, all or nothing, so a refusal never costs
        the caller quota; with Redis the hard-stop budgets are checked and held in the same
        script call (one round trip for limits and budgets). ``price``: the candidate whose
        provider and price the budgets' hold uses when ``target`` is ``False`` (``/api/chat``
        before its turn is prepared: the model its body names).
        """
        holds = asked = None
        if self.extra and target is not None:
            budgets = self.budgets
            if budgets is not None and budgets.hard:
                at = target if price is None else price
                if self._shared:
                    asked = budgets.asks(key, tokens, at)
                else:
                    holds = budgets.check(key, tokens, at)
        _, _, _, _, _, _, _, items, steps = self._plan(key, target)
        if not items and asked is None:
            return None if holds is None else Grant(self, [], [], holds)
        try:
            if asked is None and self._memory_step is not None:  # memory: no coroutine, no await
                tightest = self._memory_tightest
                if steps is not None and tightest is not None:  # request buckets only: one pass
                    best = tightest(steps)
                    if not isinstance(best, list):  # admitted: the tightest bucket's decision
                        return Grant(self, [], _headers("requests", best), holds)
                    grant = self._grant(items, best, [], None)  # a bucket refused: the 429
                else:
                    held: list[tuple[str, Limit, int]] = []
                    steps = self._steps(items, tokens, held)
                    grant = self._grant(items, self._memory_step(steps), held, None)
            else:
                grant = await self._step(items, tokens, asked, steps)
                if asked is not None:
                    holds = self._held(
                        grant, asked, key, tokens, target if price is None else price
                    )
        except BaseException:
            if holds is not None:  # refused (or cancelled): nothing to hold for
                self.budgets.release(holds)
            raise
        grant.holds = holds
        return grant

    def _held(
        self, grant: Grant, asked: list[Any], key: Any, tokens: int, at: Any
    ) -> list[Any] | None:
        """The holds Redis took for ``asked`` (or its refusal); when Redis did not answer
        (degraded: the buckets went to the local shares), the budgets' rule in memory."""
        verdicts, grant.verdicts = grant.verdicts, None
        if verdicts is None:
            return self.budgets.check(key, tokens, at)  # type: ignore[no-any-return]
        return self.budgets.held(asked, verdicts)  # type: ignore[no-any-return]

    async def admit_version(
        self, key: Any, tokens: int, target: Any, grant: Grant | None, hold: bool = False
    ) -> Grant | None:
        """Step the quotas of ``key`` (and its user) on ``target``'s model version, for a call
        admitted without a target (``/api/chat``, whose model is known only once its turn is
        prepared); raise ``RateLimited`` as ``admit`` does. The buckets join ``grant`` (its
        token settlement, and its headers where they are tighter). ``hold``: also take the
        budgets' hold (a turn whose body named no model could not at admission), in the same
        limiter call."""
        items = self.quotas.version_items(key, target) if self.quotas.versions else []
        asked = holds = None
        budgets = self.budgets
        if hold and self.extra and budgets is not None and budgets.hard:
            if self._shared:
                asked = budgets.asks(key, tokens, target)
            else:
                holds = budgets.check(key, tokens, target)
        if not items and asked is None:
            if holds is None:
                return grant
            more = Grant(self, [], [], holds)
        else:
            try:
                more = await self._step(items, tokens, asked)
                if asked is not None:
                    holds = self._held(more, asked, key, tokens, target)
            except BaseException:
                if holds is not None:
                    self.budgets.release(holds)
                raise
            more.holds = holds
        if grant is None:
            return more
        grant.tpm += more.tpm
        grant.headers = _tighter(grant.headers, more.headers)
        if more.holds:
            grant.holds = (grant.holds or []) + more.holds
        return grant

    @staticmethod
    def _steps(
        items: list[tuple[str, str, Limit, str]],
        tokens: int,
        held: list[tuple[str, Limit, int]],
    ) -> list[tuple[str, Limit, int]]:
        """The limiter's steps (bucket, limit, cost) of ``items``: one unit of each request
        bucket, the token estimate (at most the bucket's rate) of each token bucket, whose
        reservations are appended to ``held``."""
        reserved = max(1, tokens)
        steps = []
        for kind, b, lim, _ in items:
            if kind == "rpm":
                steps.append((b, lim, 1))
            else:
                c = reserved if reserved < lim.rate else lim.rate
                steps.append((b, lim, c))
                held.append((b, lim, c))
        return steps

    async def _step(
        self,
        items: list[tuple[str, str, Limit, str]],
        tokens: int,
        asked: list[Any] | None = None,
        steps: list[tuple[str, Limit, int]] | None = None,
    ) -> Grant:
        """Step every bucket of ``items`` in one limiter call, all or nothing (with the
        budgets ``asked``: the grant's ``verdicts`` hold Redis's answers for them); ``steps``:
        their steps when made already (no token bucket)."""
        held: list[tuple[str, Limit, int]] = []
        if steps is None:
            steps = self._steps(items, tokens, held)
        verdicts = None
        if asked is not None:
            decisions, verdicts = await self.limiter.admit(
                steps, [a for _, a in asked], self.budgets.instance, self.budgets.stale_ms
            )
        elif len(steps) == 1:
            decisions = [await self.limiter.acquire(*steps[0])]
        else:
            decisions = await self.limiter.acquire_many(steps)
        return self._grant(items, decisions, held, verdicts)

    def _grant(
        self,
        items: list[tuple[str, str, Limit, str]],
        decisions: list[Decision],
        held: list[tuple[str, Limit, int]],
        verdicts: list[Any] | None,
    ) -> Grant:
        """The grant for the limiter's ``decisions`` on ``items``, or the refusal (429) of the
        first bucket that refused, unless a budget refused too (``verdicts``: the caller
        answers that)."""
        for d in decisions:
            if not d.allowed:
                headers = _tightest(items, decisions)
                self._refuse(items, decisions, headers, verdicts)
                break
        else:
            headers = _admitted(items, decisions) if items else []
        grant = Grant(self, held, headers)
        if verdicts is not None:
            grant.verdicts = verdicts
        return grant

    def _refuse(
        self,
        items: list[tuple[str, str, Limit, str]],
        decisions: list[Decision],
        headers: list[tuple[str, str]],
        verdicts: list[Any] | None,
    ) -> None:
        """Raise the 429 of the first bucket that refused, unless a budget refused too (that
        is the answer, and nothing was stepped)."""
        if verdicts is not None and any(v.status for v in verdicts):
            return
        for (kind, _, limit, who), d in zip(items, decisions, strict=True):
            if not d.allowed:
                name = "requests" if kind == "rpm" else "tokens"
                self.rejected[name] += 1
                raise self._refused(name, limit.rate, d, headers, who)

    @staticmethod
    def _refused(
        kind: str, rate: int, d: Decision, headers: list[tuple[str, str]], who: str
    ) -> RateLimited:
        err = RateLimited(
            f"rate limit reached for {who}: "
            f"{rate} {kind} per minute; "
            f"retry in {max(1, math.ceil(d.retry_after))}s",
            retry_after=max(d.retry_after, 0.001),
        )
        err.headers = dict(headers)
        return err

    def adjust_later(self, bucket: str, limit: Limit, delta: int) -> None:
        """Adjust a bucket soon, in the background (settlements must not delay the answer)."""
        k = (bucket, limit)
        self._pending[k] = self._pending.get(k, 0) + delta
        if self._timer is None and self._flush_task is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._pending and self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                for (bucket, limit), delta in pending.items():
                    if delta:
                        await self.limiter.adjust(bucket, limit, delta)  # never raises
        finally:
            self._flush_task = None

    async def wait_settled(self, within: float = 2.0) -> None:
        """Apply the pending adjustments now and wait for them (shutdown and tests)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_task is None and self._pending:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush())
        if self._flush_task is not None:
            await asyncio.wait([self._flush_task], timeout=within)
