"""Optimisation recommendations from stored usage (``llmgw usage recommend``).

Pure functions over ``usage_stats`` records of one window (by model, by key, the failed
requests by model) and the key list, so they answer the same locally and through a server's
admin API. Each recommendation names its evidence (counts, shares, costs from the window) and
its **saving in money per currency** over the window: costs are never converted or added
across currencies. The rules, each with its threshold in ``Thresholds``:

- ``cheaper_model``: traffic on a model while a model at least 10 % cheaper per token, in the
  same currency (any provider: an alias can span providers), serves requests of a similar size
  (average prompt and completion within ``size_ratio``) with an error share no worse (+2
  points), and is not a deprecated version: an alias could move the traffic. Saving: its cost less the same tokens at the
  cheaper model's observed cost per token.
- ``deprecated_version``: requests to a ``:deprecated`` version (YandexGPT moves or drops
  those). Saving: the difference to the ``:latest`` version's observed cost per token (zero
  when it costs the same: the reason is the version going away).
- ``error_heavy``: a route (provider/model:version) whose error share is at least
  ``error_share``. Saving: what the failed requests were billed.
- ``idle_key``: a live key older than ``idle_days`` with no request in the window. Saving:
  none in money (a credential nobody uses is only a risk): 0.
- ``max_tokens``: a key whose answers stopped at ``max_tokens`` (``finish_reason = length``)
  in at least ``truncated_share`` of its requests. Saving: the key's cost in each currency
  times that share (a cut-off answer is usually asked again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["KINDS", "Thresholds", "recommend"]

KINDS = ("cheaper_model", "deprecated_version", "error_heavy", "idle_key", "max_tokens")

_Q = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a rule fires."""

    min_requests: int = 50
    """Fewest requests a model or key needs in the window before its shares count."""
    size_ratio: float = 1.5
    """Average prompt and completion sizes within this factor of each other are similar."""
    error_share: float = 0.05
    truncated_share: float = 0.05
    idle_days: int = 30


def _cost(row: Mapping[str, Any]) -> tuple[str | None, Decimal]:
    """The row's (currency, cost) when its cost is in one currency."""
    costs = row.get("costs") or {}
    if len(costs) == 1:
        cur, value = next(iter(costs.items()))
        return str(cur), Decimal(str(value))
    cur = row.get("currency")
    return (str(cur) if cur else None), Decimal(str(row.get("cost") or 0))


def _money(value: Decimal) -> str:
    return format(value.quantize(_Q) if value >= _Q or value == 0 else value.normalize(), "f")


def _avg(row: Mapping[str, Any], name: str) -> float:
    n = int(row.get("requests") or 0)
    return int(row.get(name) or 0) / n if n else 0.0


def _share(row: Mapping[str, Any], name: str) -> float:
    n = int(row.get("requests") or 0)
    return int(row.get(name) or 0) / n if n else 0.0


def _similar(a: float, b: float, ratio: float) -> bool:
    if a == b:
        return True
    lo, hi = sorted((a, b))
    return lo > 0 and hi / lo <= ratio


def _split(label: str) -> tuple[str, str, str | None]:
    """``provider/model:version`` -> its parts."""
    name, _, version = label.partition(":")
    provider, _, model = name.rpartition("/")
    return provider, model, version or None


def _rec(
    kind: str, subject: str, text: str, saving: dict[str, Decimal], **evidence: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": subject,
        "recommendation": text,
        "saving": {c: _money(v) for c, v in sorted(saving.items())},
        "evidence": evidence,
    }


def _cheaper(models: Sequence[Mapping[str, Any]], t: Thresholds) -> list[dict[str, Any]]:
    out = []
    busy = [m for m in models if int(m.get("requests") or 0) >= t.min_requests]
    for m in busy:
        cur, cost = _cost(m)
        tokens = int(m.get("total_tokens") or 0)
        if cur is None or cost <= 0 or tokens <= 0:
            continue
        rate = cost / tokens
        best: tuple[Decimal, Mapping[str, Any]] | None = None
        for c in busy:
            c_cur, c_cost = _cost(c)
            c_tokens = int(c.get("total_tokens") or 0)
            if (
                c is m
                or c_cur != cur
                or c_tokens <= 0
                or _split(str(c["model"]))[2] == "deprecated"
            ):
                continue
            c_rate = c_cost / c_tokens
            if c_rate >= rate * Decimal("0.9"):  # at least 10 % cheaper per token
                continue
            if not (
                _similar(_avg(m, "prompt_tokens"), _avg(c, "prompt_tokens"), t.size_ratio)
                and _similar(
                    _avg(m, "completion_tokens"), _avg(c, "completion_tokens"), t.size_ratio
                )
            ):
                continue
            if _share(c, "errors") > _share(m, "errors") + 0.02:
                continue
            if best is None or c_rate < best[0]:
                best = (c_rate, c)
        if best is None:
            continue
        c_rate, c = best
        saving = cost - c_rate * tokens
        out.append(
            _rec(
                "cheaper_model",
                str(m["model"]),
                f"move traffic from {m['model']} to {c['model']} with an alias (e.g. "
                f'[aliases] chat = ["{c["model"]}"]): it serves requests of the same size '
                f"({_avg(c, 'prompt_tokens'):.0f}/{_avg(c, 'completion_tokens'):.0f} prompt/"
                f"completion tokens on average, against {_avg(m, 'prompt_tokens'):.0f}/"
                f"{_avg(m, 'completion_tokens'):.0f}) at {c_rate / rate:.0%} of the cost per token",
                {cur: saving},
                requests=int(m["requests"]),
                tokens=tokens,
                cost=_money(cost),
                currency=cur,
                alternative=c["model"],
                alternative_requests=int(c["requests"]),
                cost_per_1k_tokens=_money(rate * 1000),
                alternative_cost_per_1k_tokens=_money(c_rate * 1000),
            )
        )
    return out


def _deprecated(models: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    by_label = {str(m["model"]): m for m in models}
    for m in models:
        provider, model, version = _split(str(m["model"]))
        if version != "deprecated":
            continue
        cur, cost = _cost(m)
        tokens = int(m.get("total_tokens") or 0)
        target = f"{provider}/{model}:latest" if provider else f"{model}:latest"
        saving = Decimal(0)
        latest = by_label.get(target)
        if latest is not None and cur is not None and tokens:
            l_cur, l_cost = _cost(latest)
            l_tokens = int(latest.get("total_tokens") or 0)
            if l_cur == cur and l_tokens:
                saving = max(cost - l_cost / l_tokens * tokens, Decimal(0))
        out.append(
            _rec(
                "deprecated_version",
                str(m["model"]),
                f"{m['model']} is a deprecated version: move its callers to {target} before "
                "the provider retires it (name the model without :deprecated, or point an alias "
                "at :latest)",
                {cur: saving} if cur else {},
                requests=int(m["requests"]),
                tokens=tokens,
                cost=_money(cost),
                currency=cur,
                latest_in_use=latest is not None,
            )
        )
    return out


def _errors(
    models: Sequence[Mapping[str, Any]], failed: Sequence[Mapping[str, Any]], t: Thresholds
) -> list[dict[str, Any]]:
    out = []
    failed_by = {str(f["model"]): f for f in failed}
    for m in models:
        n, errors = int(m.get("requests") or 0), int(m.get("errors") or 0)
        if n < t.min_requests or errors / n < t.error_share:
            continue
        f = failed_by.get(str(m["model"]), {})
        cur, wasted = _cost(f) if f else _cost(m)
        if not f:
            wasted = Decimal(0)
        out.append(
            _rec(
                "error_heavy",
                str(m["model"]),
                f"{errors} of {n} requests to {m['model']} failed ({errors / n:.1%}): add a "
                "fallback candidate to its alias, lower its rate or check the provider "
                "(llmgw providers test)",
                {cur: wasted} if cur else {},
                requests=n,
                errors=errors,
                error_share=round(errors / n, 4),
                failed_cost=_money(wasted),
                currency=cur,
            )
        )
    return out


def _idle(
    keys: Sequence[Mapping[str, Any]],
    idle_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    t: Thresholds,
) -> list[dict[str, Any]]:
    used = {str(r.get("key")) for r in idle_rows if int(r.get("requests") or 0)}
    start = now - timedelta(days=t.idle_days)
    out = []
    for k in keys:
        if k.get("revoked_at") or k.get("status") in ("revoked", "expired"):
            continue
        created = k.get("created_at")
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        if isinstance(created, datetime) and created > start:
            continue  # younger than the idle period
        if str(k.get("id")) in used:
            continue
        last = k.get("last_used_at")
        out.append(
            _rec(
                "idle_key",
                f"{k.get('name')} ({k.get('prefix')})",
                f"key {k.get('name')} ({k.get('prefix')}) made no request in {t.idle_days} days: "
                f"revoke it (llmgw keys revoke {k.get('prefix')}); an unused credential costs "
                "nothing and is only a risk",
                {},
                key=str(k.get("id")),
                created_at=str(k.get("created_at")),
                last_used_at=str(last) if last else None,
            )
        )
    return out


def _truncated(key_rows: Sequence[Mapping[str, Any]], t: Thresholds) -> list[dict[str, Any]]:
    out = []
    for r in key_rows:
        n, cut = int(r.get("requests") or 0), int(r.get("truncated") or 0)
        if n < t.min_requests or cut / n < t.truncated_share:
            continue
        costs = {str(c): Decimal(str(v)) for c, v in (r.get("costs") or {}).items()}
        if not costs and _cost(r)[0] is not None:
            costs = dict([_cost(r)])  # type: ignore[list-item]
        who = r.get("key_name") or r.get("key") or "calls without a key"
        prefix = f" ({r['key_prefix']})" if r.get("key_prefix") else ""
        out.append(
            _rec(
                "max_tokens",
                f"{who}{prefix}",
                f"{cut} of {n} answers to key {who}{prefix} stopped at max_tokens ({cut / n:.1%}): "
                "raise its max_tokens or ask for shorter answers; cut-off answers are usually "
                "asked again",
                {c: v * cut / n for c, v in costs.items()},
                requests=n,
                truncated=cut,
                truncated_share=round(cut / n, 4),
                avg_completion_tokens=round(_avg(r, "completion_tokens"), 1),
            )
        )
    return out


def recommend(
    *,
    models: Sequence[Mapping[str, Any]],
    failed: Sequence[Mapping[str, Any]],
    key_rows: Sequence[Mapping[str, Any]],
    keys: Sequence[Mapping[str, Any]],
    idle_rows: Sequence[Mapping[str, Any]],
    now: datetime,
    thresholds: Thresholds | None = None,
) -> list[dict[str, Any]]:
    """Every recommendation for one window: ``models`` and ``failed`` are ``usage_stats`` by
    model (all requests, and those with status 400 and up), ``key_rows`` by key; ``keys`` the
    key records and ``idle_rows`` ``usage_stats`` by key over the last ``idle_days`` before
    ``now``. Per kind, the largest saving first
    (grouped by currency: savings in different currencies are not compared)."""
    t = thresholds or Thresholds()
    found = [
        *_cheaper(models, t),
        *_deprecated(models),
        *_errors(models, failed, t),
        *_truncated(key_rows, t),
        *_idle(keys, idle_rows, now, t),
    ]

    def order(r: dict[str, Any]) -> tuple[int, tuple[str, ...], Decimal]:
        # savings in different currencies are never compared: by currency, then largest first
        first = next(iter(r["saving"].values()), "0")
        return KINDS.index(r["kind"]), tuple(r["saving"]), -Decimal(first)

    return sorted(found, key=order)
