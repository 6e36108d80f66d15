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


def _reset_text(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``1h2m3s`` (whole seconds, rounded up)."""
    s = max(0, math.ceil(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def _headers(kind: str, d: Decision) -> list[tuple[str, str]]:
    return [
        (f"x-ratelimit-limit-{kind}", str(d.limit)),
        (f"x-ratelimit-remaining-{kind}", str(d.remaining)),
        (f"x-ratelimit-reset-{kind}", _reset_text(d.reset_after)),
    ]


class Grant:
    """An admitted request's reservation: its response headers, and the token settlement."""

    __slots__ = ("headers", "key_id", "limits", "reserved", "settled", "tpm")

    def __init__(
        self,
        limits: KeyLimits,
        key_id: str,
        tpm: Limit | None,
        reserved: int,
        headers: list[tuple[str, str]],
    ) -> None:
        self.limits = limits
        self.key_id = key_id
        self.tpm = tpm
        self.reserved = reserved
        self.headers: list[tuple[str, str]] = headers
        self.settled = False

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers as ASGI header pairs."""
        return [(k.encode("ascii"), v.encode("ascii")) for k, v in self.headers]

    def raise_to(self, tokens: int) -> None:
        """Raise the reservation to ``tokens`` (at most the key's ``tpm``), charged to the bucket
        without a refusal: what an admitted request turned out to need before its upstream call
        (``/api/chat``: the fitted history, known only after admission). Never lowers it."""
        if self.tpm is None or self.settled:
            return
        delta = min(tokens, self.tpm.rate) - self.reserved
        if delta > 0:
            self.reserved += delta
            self.limits.adjust_later(f"tpm:{self.key_id}", self.tpm, delta)

    def settle(self, total_tokens: int | None) -> None:
        """Replace the reservation by what the request used (once; ``None`` keeps it)."""
        if self.settled:
            return
        self.settled = True
        if self.tpm is None or total_tokens is None:
            return
        delta = total_tokens - self.reserved
        if delta:
            self.limits.adjust_later(f"tpm:{self.key_id}", self.tpm, delta)


class KeyLimits:
    """Admits requests against their key's ``rpm`` and ``tpm`` through a ``RateLimiter``."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.rejected = {"requests": 0, "tokens": 0}
        # Settlements are summed per bucket and applied by one flush every SETTLE_SECONDS: a
        # task per request cost ~24 µs, and with Redis one round trip per request.
        self._pending: dict[tuple[str, Limit], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None

    async def admit(self, key: Any, tokens: int = 0) -> Grant | None:
        """Admit one request of ``key`` (its ``id``, ``rpm``, ``tpm``) of about ``tokens`` tokens,
        or raise ``RateLimited`` (429).

        ``None`` for a key without limits. A request refused on tokens gives its request unit
        back, so a refusal never costs the caller quota.
        """
        rpm, tpm = key.rpm, key.tpm
        if not rpm and not tpm:
            return None
        key_id = key.bucket if type(key) is TokenKey else str(key.id)
        headers: list[tuple[str, str]] = []
        rpm_limit = Limit(min(rpm, MAX_RATE), PERIOD) if rpm else None
        if rpm_limit is not None:
            d = await self.limiter.acquire(f"rpm:{key_id}", rpm_limit, 1)
            headers += _headers("requests", d)
            if not d.allowed:
                self.rejected["requests"] += 1
                raise self._refused("requests", rpm_limit.rate, d, headers, key_id)
        tpm_limit = Limit(min(tpm, MAX_RATE), PERIOD) if tpm else None
        reserved = 0
        if tpm_limit is not None:
            reserved = max(1, min(tokens, tpm_limit.rate))
            d = await self.limiter.acquire(f"tpm:{key_id}", tpm_limit, reserved)
            headers += _headers("tokens", d)
            if not d.allowed:
                self.rejected["tokens"] += 1
                if rpm_limit is not None:
                    self.adjust_later(f"rpm:{key_id}", rpm_limit, -1)
                raise self._refused("tokens", tpm_limit.rate, d, headers, key_id)
        return Grant(self, key_id, tpm_limit, reserved, headers)

    @staticmethod
    def _refused(
        kind: str, rate: int, d: Decision, headers: list[tuple[str, str]], bucket: str
    ) -> RateLimited:
        err = RateLimited(
            f"rate limit reached for {_WHOSE.get(bucket.partition(':')[0], 'this API key')}: "
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
