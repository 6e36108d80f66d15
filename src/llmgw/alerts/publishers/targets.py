"""The live set of publishing targets: from config and from discovery (Kubernetes Secrets),
their health, and routing an occurrence to them.

Discovery replaces its whole set at once (``set_discovered_targets``); a target from config
wins over a discovered one of the same name. A target that answered 404/410 is disabled until
its data changes (or the process restarts). Thread-safe: discovery may call from a thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from llmgw.alerts.publishers.base import normal_severity, severity_at_least
from llmgw.config import PublishRoute, PublishTarget

__all__ = ["LiveTarget", "TargetSet"]

log = logging.getLogger("llmgw.alerts")


@dataclass(slots=True)
class LiveTarget:
    """A target with where it came from and how it has been doing."""

    target: PublishTarget
    source: str
    """``config``, or the discovery source (e.g. ``secret:alerting/pd-db``)."""
    digest: str
    """Hash of its data: a changed Secret is a new target (fresh publisher, re-enabled)."""
    disabled: str | None = None
    """Why it no longer gets requests (a 404/410 answer), or None."""
    last_ok: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "retry": 0, "failed": 0})

    @property
    def name(self) -> str:
        """The target's name."""
        return self.target.name

    def health(self) -> str:
        """``disabled``, ``failing`` (the last attempt failed), ``ok``, or ``unused``."""
        if self.disabled:
            return "disabled"
        if self.last_error_at and (self.last_ok is None or self.last_error_at > self.last_ok):
            return "failing"
        return "ok" if self.last_ok else "unused"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description without any credential."""
        t = self.target
        where = {
            "pagerduty": {"events_url": t.events_url},
            "rootly": {"base_url": t.base_url},
            "slack": {"channel": t.channel, "api_url": t.api_url}
            if t.bot_token is not None
            else {"webhook": True},
        }[t.type]
        return {
            "name": t.name,
            "type": t.type,
            "source": self.source,
            "health": self.health(),
            "disabled": self.disabled,
            "mode": t.mode,
            "match_labels": t.match_labels,
            "min_severity": t.min_severity,
            **where,
            "last_ok": _iso(self.last_ok),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "counts": dict(self.counts),
        }


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _digest(t: PublishTarget) -> str:
    raw = t.model_dump_json()  # SecretStr dumps masked: add the secrets' hashes
    secrets = [
        s.get_secret_value() for s in (t.routing_key, t.webhook_url, t.bot_token, t.api_key) if s
    ]
    return hashlib.sha256((raw + "\0".join(secrets)).encode()).hexdigest()


class TargetSet:
    """Every configured and discovered target (see the module docstring)."""

    def __init__(self, config: Iterable[PublishTarget] = (), routes: Iterable[PublishRoute] = ()):
        self._lock = threading.Lock()
        self._config = {t.name: LiveTarget(t, "config", _digest(t)) for t in config}
        self._discovered: dict[str, dict[str, LiveTarget]] = {}
        self.routes = list(routes)
        self.problems: dict[str, str] = {}
        """Discovered entries that could not be used (key -> why, never a value)."""

    def set_discovered_targets(
        self, source: str, targets: Mapping[str, Mapping[str, str]]
    ) -> dict[str, str]:
        """Replace every target discovered by ``source`` with ``targets`` (key, e.g. the
        Secret's ``namespace/name`` -> its decoded data in the §5.4 shape). Applied at once for
        the next publication. Returns the keys that were refused and why (the values are never
        repeated; a refused key keeps its previous target if it had one)."""
        refused: dict[str, str] = {}
        with self._lock:
            old = self._discovered.get(source, {})
            new: dict[str, LiveTarget] = {}
            for key, data in targets.items():
                try:
                    t = PublishTarget.model_validate(dict(data))
                except ValidationError as exc:
                    fields = sorted({".".join(map(str, e["loc"])) or "?" for e in exc.errors()})
                    refused[key] = "invalid " + ", ".join(fields)
                    keep = old.get(key)
                    if keep is not None:
                        new[key] = keep
                    continue
                digest = _digest(t)
                prev = old.get(key)
                live = LiveTarget(t, f"{source}:{key}", digest)
                if prev is not None and prev.digest == digest:
                    live = prev  # unchanged: keep its health (and a disabled state)
                new[key] = live
            self._discovered[source] = new
            for key in [k for k in self.problems if k.startswith(f"{source}:")]:
                del self.problems[key]
            for key, why in refused.items():
                self.problems[f"{source}:{key}"] = why
        for key, why in refused.items():
            log.warning("publishing target %s from %s refused: %s", key, source, why)
        return refused

    def all(self) -> list[LiveTarget]:
        """Every target in effect, by name (config wins a name clash)."""
        with self._lock:
            out = dict(self._config)
            for group in self._discovered.values():
                for live in group.values():
                    out.setdefault(live.name, live)
        return [out[k] for k in sorted(out)]

    def get(self, name: str) -> LiveTarget | None:
        """The target in effect named ``name``."""
        for live in self.all():
            if live.name == name:
                return live
        return None

    def disable(self, live: LiveTarget, reason: str) -> None:
        """Stop sending to ``live`` (it answered 404/410) and say so."""
        if live.disabled is None:
            live.disabled = reason
            log.error("publishing target %s disabled: %s", live.name, reason)

    def route(
        self, alert: dict[str, Any], view_for: Any, default_mode: str
    ) -> list[tuple[LiveTarget, str]]:
        """The targets (with the mode to publish in) ``alert`` goes to.

        Rules (``alerts.routes``) pick target names by labels, severity and category; without
        rules every target is picked. Each picked target's own ``match_labels`` and
        ``min_severity`` then apply. ``view_for(mode)`` gives the occurrence's view in a mode
        (its severity and category decide)."""
        labels = alert.get("labels") or {}
        targets = self.all()
        if self.routes:
            names: set[str] = set()
            for rule in self.routes:
                if _rule_matches(rule, alert, view_for(default_mode)):
                    names.update(rule.targets)
            targets = [t for t in targets if t.name in names]
        out: list[tuple[LiveTarget, str]] = []
        for live in targets:
            t = live.target
            mode = t.mode or default_mode
            view = view_for(mode)
            if any(labels.get(k) != v for k, v in t.match_labels.items()):
                continue
            if not severity_at_least(view.get("severity"), t.min_severity):
                continue
            out.append((live, mode))
        return out


def _rule_matches(rule: PublishRoute, alert: Mapping[str, Any], view: Mapping[str, Any]) -> bool:
    labels = alert.get("labels") or {}
    if any(labels.get(k) != v for k, v in rule.match_labels.items()):
        return False
    if rule.severities and normal_severity(view.get("severity")) not in {
        normal_severity(s) for s in rule.severities
    }:
        return False
    cls = alert.get("classification") or {}
    category = cls.get("category") if cls.get("status") == "ok" else None
    return not (rule.categories and category not in rule.categories)
