"""Budgets at run time: the hard-stop check, the running spend, reconciliation and notices.

One ``BudgetTracker`` per gateway process. The hot path touches memory only:

- ``check(key)`` (before a request is admitted): two dict look-ups when budgets exist (the key's
  and its user's); a hard-stop budget whose mirrored spend has reached its amount raises
  ``BudgetExceeded`` (402, ``budget_exceeded``, ``Retry-After`` = the period's end).
- ``charge(event)`` (when a request is recorded): adds the cost to the mirror of each matching
  budget (same currency as the provider's) and to a pending sum.

A background task does the rest, off the request path:

- every ``FLUSH_SECONDS`` the pending sums go to Redis in one pipeline (``INCRBYFLOAT`` on
  ``<prefix>:{<budget id>}:<period>``, with a TTL past the period's end); the replies are the
  spend of every instance together and replace the mirror;
- every ``refresh_interval`` the budgets are re-read from the database and the shared spend from
  Redis (``MGET``), so a budget crossed on another instance stops this one within that time;
- every ``reconcile_interval`` (and at start) the spend in the database (``usage``, through the
  rollups) is compared with Redis, and Redis is raised to it when lower (after a Redis restart);
  without Redis the mirror is raised the same way (one instance);
- when the spend reaches a threshold, ``BudgetStore.claim_notice`` inserts the notice row (its
  primary key is budget, period, threshold): the one instance whose insert succeeds sends the
  notification, so each threshold is notified once per period across instances.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmgw.budgets.periods import period_bounds, period_name
from llmgw.budgets.store import BudgetStore
from llmgw.errors import BudgetExceeded, RateLimited
from llmgw.notify import Notification, Notifier
from llmgw.ratelimit.gcra import BudgetAsk, BudgetVerdict
from llmgw.tasks import stop_task

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.engine import Engine

    from llmgw.config import BudgetSettings
    from llmgw.storage.budget_tables import Budget, Quota

__all__ = ["FLUSH_SECONDS", "BudgetTracker", "Hold", "Rule"]

HOLD_STALE_MS = 30_000
"""Holds of an instance not heard from for this long are dropped from the shared sum (it died
with requests in flight); a live one confirms its holds every ``refresh_interval``."""

log = logging.getLogger("llmgw.budgets")

_new = tuple.__new__
"""``_new(BudgetAsk, (...))``: a ``NamedTuple`` without its ``__new__`` (Python code)."""

FLUSH_SECONDS = 0.2
"""How long spend is summed before one Redis pipeline carries it."""

# Raise a key to the database's figure when it is lower (a Redis restart lost the counter).
_RAISE_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local db = tonumber(ARGV[1])
if cur < db then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return tostring(cur)
"""


Hold = tuple["Rule", float, bool]
"""What ``check`` (or Redis: ``True``) held against one budget for one request: the budget,
the amount, and whether it is held in Redis (given back there by the next flush). A plain tuple:
a request makes one per hard-stop budget, and a ``NamedTuple`` costs ~0.3 µs more each."""


# Give back what this instance held in Redis (``ADMIT_LUA``'s holds hash) and say it is alive:
# KEYS: holds hashes; ARGV: instance, then the amount to give back per key (0: only alive).
_HOLDS_LUA = """
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local own = 'h:' .. ARGV[1]
for i = 1, #KEYS do
  local d = tonumber(ARGV[i + 1])
  if d ~= 0 then
    local v = tonumber(redis.call('HINCRBYFLOAT', KEYS[i], own, -d))
    if v < 1e-9 then redis.call('HSET', KEYS[i], own, 0) end
  end
  redis.call('HSET', KEYS[i], 't:' .. ARGV[1], nowms)
end
return #KEYS
"""


@dataclass(slots=True)
class Rule:
    """One budget in force, with its current period and the spend mirrored in memory."""

    id: uuid.UUID
    scope: str
    subject_id: uuid.UUID
    period: str
    currency: str
    amount: float
    thresholds: list[int]
    hard_stop: bool
    start: datetime
    end: datetime
    end_ts: float
    label: str
    spent: float = 0.0
    pending: float = 0.0
    synced: float = 0.0
    """The spend of all instances as last read from Redis (or the database); ``spent - synced``
    is what this instance charged since."""
    avg: float = 0.0
    """The average cost of this instance's requests under the budget (exponentially
    weighted; 0 before the first): the hold's estimate once known."""
    held: float = 0.0
    """The estimated cost of this instance's requests admitted under the hard stop and not
    yet answered (``check`` holds it, ``release`` gives it back once the cost is charged)."""
    unheld: float = 0.0
    """Holds taken in Redis and given back here since the last flush (it gives them back there)."""
    shared_held: float = 0.0
    """Of ``held``, what is held in Redis (kept alive by the refresh loop)."""
    notified: set[int] = field(default_factory=set)
    keys: tuple[str, str, int] | None = None
    """Redis spend key, holds key and expiry (ms), once asked (``BudgetTracker.asks``)."""

    @property
    def redis_key(self) -> str:
        """The key of this period's spend (hash-tagged by budget id)."""
        return f"{{{self.id.hex}}}:{period_name(self.period, self.start)}"


def _wall() -> float:
    return time.time()


class BudgetTracker:
    """Budgets for one gateway process (see the module docstring)."""

    def __init__(
        self,
        settings: BudgetSettings,
        engine: Engine,
        notifier: Notifier,
        currencies: Mapping[str, str],
        *,
        redis_url: str | None = None,
        on_refresh: Callable[[list[Quota], bool], None] | None = None,
        clock: Callable[[], float] = _wall,
        cost: Callable[[str, str, int, int, str | None], Any] | None = None,
        instances: int = 1,
    ) -> None:
        self.settings = settings
        self.store = BudgetStore(engine, clock=lambda: datetime.fromtimestamp(clock(), UTC))
        self.notifier = notifier
        self.currencies = dict(currencies)
        self._clock = clock
        self._cost = cost
        """(provider, model, prompt, completion tokens, version) -> cost: prices a request's
        token estimate at admission (the hold)."""
        self.instances = max(1, instances)
        """Instances sharing the budgets: each may hold at most its share of what is left."""
        self._on_refresh = on_refresh
        """Called after each refresh with the quotas and whether a hard-stop budget exists."""
        self._prefix = settings.redis_prefix + ":"
        self._redis: Redis | None = None
        self._redis_url = redis_url
        self.rules: dict[uuid.UUID, list[Rule]] = {}
        """Subject (key or user id) -> its budgets; empty when there are none (the fast path)."""
        self.hard = False
        """Some budget has a hard stop (the pipeline checks ``check`` only then)."""
        self._by_id: dict[tuple[uuid.UUID, datetime], Rule] = {}
        self._seen: dict[int, tuple[Any, Any, Any, tuple[Rule, ...] | None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[Any]] = set()
        self.instance = uuid.uuid4().hex[:16]
        """This process's name in the holds hashes in Redis."""
        self.stale_ms = max(HOLD_STALE_MS, int(settings.refresh_interval * 5000))
        self.refused = 0
        self.deferred = 0
        """Requests refused (429) because the requests in flight held the rest of a budget."""
        self.notices_sent = 0
        self.errors = 0

    # -- the hot path ----------------------------------------------------------------------
    def check(self, key: Any, tokens: int = 0, target: Any = None) -> list[Hold] | None:
        """Raise ``BudgetExceeded`` when a hard-stop budget of ``key`` or its user is spent;
        otherwise hold the request's estimated cost against each hard-stop budget it counts
        against (returned: give it back with ``release`` when the request ends). This is the
        rule in memory (one instance, or Redis unusable); with Redis the same check and hold
        run in the rate limiter's script (``asks``, then ``held``).

        The estimate is the budget's average cost per request on this instance, or before the
        first answer ``tokens`` (the prompt's estimate plus the answer's cap) priced at the
        target's output price. Each instance may use its share of what was left at the last
        shared figure, ``(amount - synced) / instances``, for what it holds plus what it spent
        since; a request that would take it past that share is refused with 429
        ``budget_in_flight`` (retry in a second: what is in flight is about to be charged),
        unless the instance holds nothing and spent nothing since (one request always goes).
        So the overshoot is at most about one request per instance per shared-figure update
        (the 0.2 s flush), not a whole burst."""
        key_id, user_id = key.id, key.user_id
        seen = self._seen.get(id(key_id))  # _subjects inlined: a hit is the hot path
        if (
            seen is None
            or seen[0] is not key_id
            or seen[1] is not user_id
            or seen[2] is not self.rules
        ):
            found = self._subjects(key_id, user_id)
        else:
            found = seen[3]
        if found is None:
            return None
        currency = self.currencies.get(target.provider) if target else None
        holds: list[Hold] | None = None
        tok = -1.0  # the token estimate's price, computed once if needed
        for r in found:
            if not r.hard_stop:
                continue
            if r.spent >= r.amount:
                self._spent(r)
                continue
            if r.currency != currency:
                continue
            est = r.avg
            if not est:
                if tok < 0:
                    tok = self._estimate(tokens, target)
                est = tok
                if not est:
                    continue
            held = r.held
            own = r.spent - r.synced  # charged here since the last shared figure
            if (held or own) and held + own + est > (r.amount - r.synced) / self.instances:
                self.deferred += 1
                raise self._in_flight(r)
            if holds is None:
                holds = [(r, est, False)]
            else:
                holds.append((r, est, False))
        if holds is None:
            return None
        for r, est, _ in holds:  # none refused: hold on each
            r.held += est
        return holds

    def asks(self, key: Any, tokens: int, target: Any) -> list[tuple[Rule, BudgetAsk]] | None:
        """The hard-stop budgets of ``key`` and its user that a request to ``target`` counts
        against, to be checked and held in Redis in the rate limiter's script call (one round
        trip for limits and budgets); ``BudgetExceeded`` at once when the spend known here has
        reached a budget (no round trip). ``None``: nothing to ask."""
        key_id, user_id = key.id, key.user_id
        seen = self._seen.get(id(key_id))
        if (
            seen is None
            or seen[0] is not key_id
            or seen[1] is not user_id
            or seen[2] is not self.rules
        ):
            found = self._subjects(key_id, user_id)
        else:
            found = seen[3]
        if found is None:
            return None
        currency = self.currencies.get(target.provider) if target else None
        out: list[tuple[Rule, BudgetAsk]] | None = None
        tok = -1.0
        for r in found:
            if not r.hard_stop:
                continue
            if r.spent >= r.amount:
                self._spent(r)
                continue
            if r.currency != currency:
                continue
            est = r.avg
            if not est:
                if tok < 0:
                    tok = self._estimate(tokens, target)
                est = tok
                if not est:
                    continue
            keys = r.keys or self._keys(r)
            ask = _new(BudgetAsk, (keys[0], keys[1], r.amount, est, keys[2]))
            if out is None:
                out = [(r, ask)]
            else:
                out.append((r, ask))
        return out

    def held(
        self, asked: list[tuple[Rule, BudgetAsk]], verdicts: list[BudgetVerdict]
    ) -> list[Hold]:
        """Redis's answers to ``asks``: the holds it took, or the refusal (nothing was held,
        no bucket stepped): 402 ``budget_exceeded`` when a budget is spent, else 429
        ``budget_in_flight``."""
        holds: list[Hold] = []
        deferred = None
        for (r, ask), v in zip(asked, verdicts, strict=True):
            if v.status == 2:
                r.spent = max(r.spent, v.spent)
                self._spent(r)
            elif v.status == 1:
                deferred = r
            holds.append((r, ask.estimate, True))
        if deferred is not None:
            self.deferred += 1
            raise self._in_flight(deferred)
        for r, est, _ in holds:
            r.held += est
            r.shared_held += est
        return holds

    def _subjects(self, key_id: Any, user_id: Any) -> tuple[Rule, ...] | None:
        """The budgets of a key and of its user, in that order (``None``: neither has one),
        memoised per key id object (the auth cache keeps one per key): ``UUID.__hash__`` is
        Python code, and a request asks at admission and again when charged. ``check``,
        ``asks`` and ``charge`` read the memo themselves and call this on a miss."""
        rules = self.rules
        seen = self._seen.get(id(key_id))
        if seen is not None and seen[0] is key_id and seen[1] is user_id and seen[2] is rules:
            return seen[3]
        mine, theirs = rules.get(key_id), rules.get(user_id)
        found = (*(mine or ()), *(theirs or ())) or None
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[id(key_id)] = (key_id, user_id, rules, found)  # holds them: ids stay
        return found

    def _keys(self, r: Rule) -> tuple[str, str, int]:
        """``r``'s spend key and holds key in Redis, and when they expire (ms), kept on ``r``."""
        spend = self._prefix + r.redis_key
        r.keys = (spend, spend + ":holds", int((r.end_ts + 2 * 86_400) * 1000))
        return r.keys

    def _spent(self, r: Rule) -> None:
        """Refuse with 402 when ``r``'s period is still running (else the next refresh resets it)."""
        now = self._clock()
        if now >= r.end_ts:
            return
        self.refused += 1
        err = BudgetExceeded(
            f"budget exceeded for this {'API key' if r.scope == 'key' else 'user'}"
            f": {r.spent:.2f} of {r.amount:.2f} {r.currency} this {r.period}; "
            f"resets at {r.end:%Y-%m-%dT%H:%M:%SZ}",
            retry_after=r.end_ts - now,
        )
        err.headers = {"x-llmgw-budget-reset": r.end.strftime("%Y-%m-%dT%H:%M:%SZ")}
        raise err

    def release(self, holds: list[Hold]) -> None:
        """Give back what ``check`` or Redis held (the request ended; its cost, if any, is
        charged). A hold in Redis is given back there by the next flush, after the spend."""
        for r, est, shared in holds:
            h = r.held - est
            r.held = h if h > 1e-12 else 0.0
            if shared:
                h = r.shared_held - est
                r.shared_held = h if h > 1e-12 else 0.0
                r.unheld += est
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(
                        FLUSH_SECONDS, self._flush_soon
                    )

    def _estimate(self, tokens: int, target: Any) -> float:
        """What a request of about ``tokens`` tokens to ``target`` may cost (0: unknown)."""
        if not target or self._cost is None or tokens <= 0:
            return 0.0
        return float(self._cost(target.provider, target.model, 0, tokens, target.version))

    @staticmethod
    def _in_flight(r: Rule) -> RateLimited:
        return RateLimited(
            f"budget nearly spent for this {'API key' if r.scope == 'key' else 'user'}: "
            f"{r.spent:.2f} of {r.amount:.2f} {r.currency} this {r.period}, and requests in "
            "flight may cost the rest; retry in 1s",
            retry_after=1.0,
            code="budget_in_flight",
        )

    def charge(self, key_id: Any, user_id: Any, provider: str | None, cost: Any) -> None:
        """Count a recorded request's ``cost`` against the budgets of its key and user."""
        if not cost or provider is None:
            return
        seen = self._seen.get(id(key_id))
        if (
            seen is None
            or seen[0] is not key_id
            or seen[1] is not user_id
            or seen[2] is not self.rules
        ):
            found = self._subjects(key_id, user_id)
        else:
            found = seen[3]
        if found is None:
            return
        currency = self.currencies.get(provider)
        amount = float(cost)
        for r in found:
            if r.currency == currency:
                r.spent += amount
                r.pending += amount
                avg = r.avg
                r.avg = avg + (amount - avg) * 0.2 if avg else amount
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)

    # -- background ------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the budgets, reconcile once, and start the background loop."""
        if self._redis_url is not None:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self._redis_url, socket_timeout=2.0)
        try:
            await self.refresh()
            await self.reconcile()
        except Exception:  # noqa: BLE001 - the loop retries; serving must not wait on it
            self.errors += 1
            log.warning("budgets: first load failed; retrying in the background", exc_info=True)
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Flush the pending spend and stop."""
        if self._loop_task is not None:
            await stop_task(self._loop_task, 5.0, "the budget tracker's loop")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - shutting down
            log.debug("budgets: final flush failed", exc_info=True)
        if self._sends:
            await asyncio.wait(self._sends, timeout=5)
        if self._redis is not None:
            await self._redis.aclose()

    async def _run(self) -> None:
        s = self.settings
        next_reconcile = self._clock() + s.reconcile_interval
        while True:
            await asyncio.sleep(s.refresh_interval)
            try:
                await self.refresh()
                await self._keep_holds()
                if self._clock() >= next_reconcile:
                    next_reconcile = self._clock() + s.reconcile_interval
                    await self.reconcile()
            except Exception:  # noqa: BLE001 - logged, counted, retried next round
                self.errors += 1
                log.warning("budgets: refresh failed", exc_info=True)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_guarded())

    async def _flush_guarded(self) -> None:
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - the pending sums are kept for the next flush
            self.errors += 1
            log.warning("budgets: could not push spend to Redis", exc_info=True)
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Push the pending spend to Redis (one pipeline), give back there the holds released
        since (after the spend, so the shared spend + holds never drops below the truth), and
        check the thresholds."""
        todo = [r for rules in self.rules.values() for r in rules if r.pending]
        unheld = [r for r in self._by_id.values() if r.unheld] if self._redis is not None else []
        if not todo and not unheld:
            return
        if self._redis is not None:
            amounts = [r.pending for r in todo]
            gives = [r.unheld for r in unheld]
            pipe = self._redis.pipeline(transaction=False)
            for r, amount in zip(todo, amounts, strict=True):
                key = self._prefix + r.redis_key
                pipe.incrbyfloat(key, amount)
                pipe.pexpireat(key, int((r.end_ts + 2 * 86_400) * 1000))
            if unheld:
                self._holds(pipe, unheld, gives)
            replies = await pipe.execute()
            for i, (r, amount) in enumerate(zip(todo, amounts, strict=True)):
                r.pending -= amount
                r.synced = float(replies[2 * i])
                r.spent = r.synced + r.pending
            for r, given in zip(unheld, gives, strict=True):
                r.unheld -= given
        else:
            for r in todo:
                r.pending = 0.0
                r.synced = r.spent
        await self._thresholds(todo)

    def _holds(self, pipe: Any, rules: list[Rule], gives: list[float]) -> None:
        """Queue on ``pipe`` one ``_HOLDS_LUA`` call: give back ``gives`` held in Redis for
        ``rules`` (0: only say this instance is alive, so its holds keep counting). ``EVAL``,
        not a registered script: a pipeline with one first asks ``SCRIPT EXISTS`` (a second
        round trip per flush)."""
        keys = [(r.keys or self._keys(r))[1] for r in rules]
        pipe.eval(_HOLDS_LUA, len(keys), *keys, self.instance, *map(repr, gives))

    async def _keep_holds(self) -> None:
        """Tell Redis this instance still holds what it holds (requests still in flight)."""
        alive = [r for r in self._by_id.values() if r.shared_held and not r.unheld]
        if self._redis is None or not alive:
            return
        pipe = self._redis.pipeline(transaction=False)
        self._holds(pipe, alive, [0.0] * len(alive))
        await pipe.execute()

    async def refresh(self) -> None:
        """Re-read the budgets (database) and the shared spend (Redis)."""
        budgets, labels, quotas = await asyncio.to_thread(self._load)
        now = self._clock()
        at = datetime.fromtimestamp(now, UTC)
        old = self._by_id
        by_id: dict[tuple[uuid.UUID, datetime], Rule] = {}
        rules: dict[uuid.UUID, list[Rule]] = {}
        for b in budgets:
            start, end = period_bounds(b.period, at)
            prev = old.get((b.id, start))
            rule = Rule(
                id=b.id,
                scope=b.scope,
                subject_id=b.subject_id,
                period=b.period,
                currency=b.currency,
                amount=float(b.amount),
                thresholds=[int(t) for t in b.thresholds.split(",") if t],
                hard_stop=b.hard_stop,
                start=start,
                end=end,
                end_ts=end.timestamp(),
                label=labels.get(b.subject_id, str(b.subject_id)[:8]),
            )
            if prev is not None:  # the same object: the holds of requests in flight refer to it
                prev.scope, prev.currency, prev.amount = rule.scope, rule.currency, rule.amount
                prev.thresholds, prev.hard_stop, prev.label = (
                    rule.thresholds,
                    rule.hard_stop,
                    rule.label,
                )
                rule = prev
            by_id[(b.id, start)] = rule
            rules.setdefault(b.subject_id, []).append(rule)
        if self._redis is not None and by_id:
            listed = list(by_id.values())
            values = await self._redis.mget([self._prefix + r.redis_key for r in listed])
            for r, v in zip(listed, values, strict=True):
                if v is not None:
                    r.synced = float(v)
                    r.spent = max(r.spent, r.synced + r.pending)
        self._by_id = by_id
        self.rules = rules
        self._seen = {}  # the memo of the rules replaced
        self.hard = any(r.hard_stop for r in by_id.values())
        if self._on_refresh is not None:
            self._on_refresh(quotas, self.hard)
        await self._thresholds(list(by_id.values()))

    def _load(self) -> tuple[list[Budget], dict[uuid.UUID, str], list[Quota]]:
        quotas = self.store.quotas()
        if not self.settings.enabled:
            return [], {}, quotas
        budgets = self.store.budgets()
        labels = self.store.labels({b.subject_id for b in budgets}) if budgets else {}
        return budgets, labels, quotas

    async def reconcile(self) -> None:
        """Raise the shared spend to the database's where it is lower."""
        if not self._by_id:
            return
        found = await asyncio.to_thread(self._db_spend, list(self._by_id.values()))
        for r in self._by_id.values():
            db = found.get((r.scope, r.subject_id, r.period, r.currency), 0.0)
            if db <= r.spent - r.pending:
                continue
            if self._redis is not None:
                ttl = max(1, int((r.end_ts + 2 * 86_400 - self._clock()) * 1000))
                reply = await self._redis.eval(
                    _RAISE_LUA, 1, self._prefix + r.redis_key, repr(db), ttl
                )
                r.synced = float(reply)
                r.spent = r.synced + r.pending
            else:
                r.synced = db
                r.spent = db + r.pending
        await self._thresholds(list(self._by_id.values()))

    def _db_spend(self, rules: list[Rule]) -> dict[tuple[str, uuid.UUID, str, str], float]:
        from llmgw.usage.reports import usage_stats

        out: dict[tuple[str, uuid.UUID, str, str], float] = {}
        wanted = {(r.scope, r.period, r.start) for r in rules}
        for scope, period, start in wanted:
            rows = usage_stats(self.store.engine, since=start, by=scope, currencies=self.currencies)  # type: ignore[arg-type]
            for row in rows:
                subject = row.get(scope)
                if subject is None:
                    continue
                for currency, cost in (row.get("costs") or {}).items():
                    k = (scope, uuid.UUID(subject), period, currency)
                    out[k] = float(Decimal(str(cost)))
        return out

    async def _thresholds(self, rules: list[Rule]) -> None:
        for r in rules:
            for t in r.thresholds:
                if t in r.notified or r.spent < r.amount * t / 100:
                    continue
                spent = Decimal(repr(round(r.spent, 10)))
                try:
                    won = await asyncio.to_thread(self.store.claim_notice, r.id, r.start, t, spent)
                except Exception:  # noqa: BLE001 - the next pass tries again
                    self.errors += 1
                    log.warning("budgets: could not record a notice", exc_info=True)
                    continue
                r.notified.add(t)
                if won and self.settings.notify:
                    task = asyncio.get_running_loop().create_task(
                        self.notifier.notify(self.settings.notify, self._note(r, t))
                    )
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)
                if won:
                    self.notices_sent += 1
                    log.info("budgets: budget %s reached %d%% of its %s", r.id, t, r.period)

    @staticmethod
    def _note(r: Rule, threshold: int) -> Notification:
        who = f"{r.scope} {r.label}"
        title = f"llmgw budget: {who} reached {threshold}% of its {r.period}ly budget"
        if r.period == "day":
            title = f"llmgw budget: {who} reached {threshold}% of its daily budget"
        stop = (
            " Requests are now refused until it resets." if r.hard_stop and threshold >= 100 else ""
        )
        text = (
            f"{who} has spent {r.spent:.2f} of {r.amount:.2f} {r.currency} this {r.period} "
            f"({r.start:%Y-%m-%d} to {r.end:%Y-%m-%d %H:%M} UTC).{stop}"
        )
        return Notification(
            event="budget.threshold",
            title=title,
            text=text,
            data={
                "budget_id": str(r.id),
                "scope": r.scope,
                "subject_id": str(r.subject_id),
                "subject": r.label,
                "period": r.period,
                "period_start": r.start.isoformat(),
                "resets_at": r.end.isoformat(),
                "currency": r.currency,
                "amount": round(r.amount, 10),
                "spent": round(r.spent, 10),
                "threshold": threshold,
                "hard_stop": r.hard_stop,
            },
        )
