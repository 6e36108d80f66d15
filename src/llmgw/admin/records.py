"""The one place that turns core objects into the JSON-ready records of ``AdminOps``.

The shapes are the CLI's ``--json`` output (unchanged from before the admin API) and the
``/admin/v1`` response bodies: datetimes become ISO 8601 UTC strings, decimals plain fixed-point
strings, UUIDs strings. Never a secret or a digest.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmgw.admin.ops import Record

if TYPE_CHECKING:
    from llmgw.auth.keys import KeyInfo
    from llmgw.auth.users import UserInfo
    from llmgw.config import ProviderConfig

__all__ = [
    "audit_record",
    "iso",
    "jsonable",
    "key_record",
    "price_records",
    "provider_record",
    "recent_record",
    "usage_record",
    "user_record",
]


def iso(when: datetime | None) -> str | None:
    """``when`` as ISO 8601 in UTC (``2026-12-03T07:24:27.123456+00:00``), as orjson writes it."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat()


def jsonable(value: Any) -> Any:
    """``value`` with datetimes, decimals and UUIDs (also inside lists and dicts) as strings."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def key_record(info: KeyInfo, now: datetime) -> Record:
    """A key (never its secret or digest); ``status`` as of ``now``."""
    return {
        "id": str(info.id),
        "name": info.name,
        "prefix": info.prefix,
        "user": info.user_email,
        "user_id": str(info.user_id) if info.user_id else None,
        "status": info.status(now),
        "created_at": iso(info.created_at),
        "expires_at": iso(info.expires_at),
        "revoked_at": iso(info.revoked_at),
        "last_used_at": iso(info.last_used_at),
        "rpm": info.rpm,
        "tpm": info.tpm,
        "models": list(info.models) if info.models is not None else None,
        "rotated_from": str(info.rotated_from) if info.rotated_from else None,
    }


def user_record(user: UserInfo) -> Record:
    """A user with the number of their live keys."""
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "status": "disabled" if user.disabled else "active",
        "keys": user.keys,
        "created_at": iso(user.created_at),
    }


def usage_record(row: Mapping[str, Any]) -> Record:
    """A usage statistics row or a recent request (cost as a fixed-point string)."""
    return {str(k): jsonable(v) for k, v in row.items()}


def recent_record(row: Mapping[str, Any], key_prefix: str | None) -> Record:
    """One recent request: when, which key, what model and provider, the outcome and its size.

    ``row`` has the usage columns (a database row or a ``UsageEvent``'s fields).
    """
    latency = row["latency_ms"]
    ttft = row["ttft_ms"]
    return {
        "at": iso(row["created_at"]),
        "request_id": row["request_id"],
        "key_prefix": key_prefix,
        "key_id": str(row["key_id"]) if row["key_id"] is not None else None,
        "user_id": str(row["user_id"]) if row["user_id"] is not None else None,
        "token_id": row.get("token_id"),
        "endpoint": row["endpoint"],
        "provider": row["provider"],
        "model": row["model"],
        "model_version": row["model_version"],
        "stream": bool(row["stream"]),
        "status": int(row["status"]),
        "error_type": row["error_type"],
        "latency_ms": round(float(latency), 3) if latency is not None else None,
        "ttft_ms": round(float(ttft), 3) if ttft is not None else None,
        "prompt_tokens": int(row["prompt_tokens"]),
        "completion_tokens": int(row["completion_tokens"]),
        "total_tokens": int(row["total_tokens"]),
        "cost": format(Decimal(row["cost"]), "f"),
    }


def provider_record(row: Mapping[Any, Any], *, live: bool) -> Record:
    """One (provider, model) health row; ``live`` says whether it comes from a running router."""
    return {**{str(k): jsonable(v) for k, v in row.items()}, "live": live}


def audit_record(row: Mapping[Any, Any]) -> Record:
    """One audit log entry."""
    return {
        "id": int(row["id"]),
        "at": iso(row["at"]),
        "actor": row["actor"],
        "actor_kind": row["actor_kind"],
        "action": row["action"],
        "target": row["target"],
        "source": row["source"],
        "remote_addr": row["remote_addr"],
        "detail": jsonable(row["detail"]) if row["detail"] is not None else None,
    }


def price_records(providers: Sequence[ProviderConfig]) -> list[Record]:
    """The price in force for every model each provider names or the bundled table lists:
    ``{"provider", "kind", "model", "currency", "input", "output"`` (per 1M tokens, fixed-point strings,
    ``null`` when unpriced), ``"source"`` (``config``, ``bundled`` or ``unpriced``), ``"entry"``,
    ``"as_of"``, ``"reference"``, ``"units"`` (YandexGPT's billing units or ``null``), ``"note"``,
    ``"offered"`` (the provider's ``models`` list names it, or it lists none: any name passes) and ``"table_version"``}."""
    from llmgw.usage.pricing import TABLE_VERSION, currency_of, effective_prices

    out: list[Record] = []
    for p in providers:
        offered = set(p.models)
        for model, price in effective_prices(p):
            units = price.units if price is not None else None
            out.append(
                {
                    "provider": p.name,
                    "kind": p.kind,
                    "model": model,
                    "currency": price.currency if price is not None else currency_of(p),
                    "input": _fixed(price.input) if price is not None else None,
                    "output": _fixed(price.output) if price is not None else None,
                    "source": price.source if price is not None else "unpriced",
                    "entry": price.entry if price is not None else None,
                    "as_of": price.as_of if price is not None else None,
                    "reference": price.reference if price is not None else None,
                    "units": None
                    if units is None
                    else {
                        "per_1k_units": _fixed(units.per_1k_units),
                        "input_multiplier": _fixed(units.input_multiplier),
                        "output_multiplier": _fixed(units.output_multiplier),
                    },
                    "note": price.note if price is not None else None,
                    "offered": not offered or model.split(":")[0] in offered or model in offered,
                    "table_version": TABLE_VERSION,
                }
            )
    return out


def _fixed(value: Decimal) -> str:
    """A Decimal as plain fixed-point text without trailing zeros (``2.5``, ``200``)."""
    return format(value.normalize(), "f")
