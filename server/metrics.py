"""Prometheus metrics with bounded label sets: values come from the config, never from the client.

The per-request series (request counts and durations, upstream durations, time to first token,
tokens, requests in flight) are plain numbers updated on the event loop and turned into metric
families at scrape time: a ``prometheus_client`` ``inc``/``observe`` takes a lock and, for a
histogram, walks the buckets in Python, about 6 µs per request for these series. The scrape
(``/metrics``) runs on the same loop, so it reads consistent values without a lock. Rare series
(errors) keep ``prometheus_client``'s own types.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from time import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from llmgw.config import Settings
from llmgw.server.receipt import ReceiptStats
from llmgw.usage.pricing import currency_of

__all__ = ["CONTENT_TYPE_LATEST", "ERROR_TYPES", "ROUTES", "Metrics"]

OTHER = "other"
NONE = "none"

ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/models",
        "/api/providers",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
)

# Closed set of error labels: the error codes of llmgw.errors plus the stream outcomes.
ERROR_TYPES = frozenset(
    {
        "invalid_request",
        "invalid_value",
        "payload_too_large",
        "model_not_found",
        "invalid_api_key",
        "model_not_allowed",
        "rate_limit_exceeded",
        "upstream_error",
        "upstream_timeout",
        "unavailable",
        "internal_error",
        "client_disconnected",
        "drain_deadline",
        "not_found",
        "method_not_allowed",
        "circuit_open",
        "forbidden_field",
        "database_unavailable",
    }
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


_USAGE_GAUGES = {
    "queued": "records waiting for the writer thread",
    "written": "rows committed to the database (rejected rows not counted)",
    "spooled": "records written to the spool while the database failed",
    "spool_records": "records waiting on disk for replay",
    "rejected": "rows the database refused for good (see `llmgw usage rejected`)",
    "journal_pending": "journaled records not yet committed or spooled",
    "stranded": "records held only in memory (neither database nor spool took them)",
    "unrecordable": "1 while neither the database nor the journal can take a record",
    "refused": "billable requests refused with 503 usage_unavailable",
}


class _StatsCollector(Collector):
    """Gauges read at scrape time from a callable (the usage recorder's ``stats()``)."""

    def __init__(self, stats: Callable[[], Mapping[str, object]]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        try:
            stats = self._stats()
        except Exception:  # noqa: BLE001 - a scrape must not fail because of the recorder
            return []
        out: list[Metric] = []
        for name, text in _USAGE_GAUGES.items():
            value = stats.get(name)
            if isinstance(value, int | float):
                g = GaugeMetricFamily(f"llmgw_usage_{name}", f"Usage recorder: {text}.")
                g.add_metric([], float(value))
                out.append(g)
        return out


class _RateLimitCollector(Collector):
    """Per-key rate limits: refusals by limit, and the shared backend's state (read at scrape)."""

    def __init__(self, limits: Any) -> None:
        self._limits = limits

    def collect(self) -> Iterable[Metric]:
        limits = self._limits
        rejected = CounterMetricFamily(
            "llmgw_ratelimit_rejected",
            "Requests refused with 429 by an API key's rpm or tpm limit.",
            labels=["limit"],
        )
        for kind, n in sorted(limits.rejected.items()):
            rejected.add_metric([kind], float(n))
        degraded = GaugeMetricFamily(
            "llmgw_ratelimit_degraded",
            "1 while the Redis rate-limit backend is unreachable and limits are enforced locally.",
        )
        degraded.add_metric([], 1.0 if limits.limiter.degraded else 0.0)
        errors = CounterMetricFamily(
            "llmgw_ratelimit_backend_errors",
            "Errors and timeouts talking to the rate-limit backend (Redis).",
        )
        errors.add_metric([], float(limits.limiter.backend_errors))
        return [rejected, degraded, errors]


class _BackupCollector(Collector):
    """The scheduled backups (``storage.backup_schedule.BackupStats``)."""

    def __init__(self, stats: Any) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        st = self._stats
        runs = CounterMetricFamily(
            "llmgw_backups", "Scheduled backups taken by the gateway, by result.", labels=["result"]
        )
        for result, n in st.results.items():
            runs.add_metric([result], n)
        yield runs
        yield GaugeMetricFamily(
            "llmgw_backup_last_success_timestamp_seconds",
            "Unix time of the last good scheduled backup (0: none yet).",
            value=st.last_success,
        )
        yield GaugeMetricFamily(
            "llmgw_backup_last_duration_seconds",
            "Seconds the last good scheduled backup took (copy and check).",
            value=st.last_seconds,
        )
        yield GaugeMetricFamily(
            "llmgw_backup_last_size_bytes",
            "Size of the last good scheduled backup.",
            value=st.last_bytes,
        )
        yield GaugeMetricFamily(
            "llmgw_backup_running", "1 while a scheduled backup runs.", value=int(st.running)
        )


class _ReceiptCollector(Collector):
    """Requests cut by the receipt deadline or the header limits (``llmgw.server.receipt``)."""

    def __init__(self, stats: ReceiptStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        timeouts = CounterMetricFamily(
            "llmgw_request_receipt_timeouts",
            "Requests whose headers or body did not arrive within request_receipt_timeout.",
        )
        timeouts.add_metric([], float(self.stats.timeouts))
        too_large = CounterMetricFamily(
            "llmgw_request_headers_too_large",
            "Requests refused with 431: head over server.max_header_bytes or server.max_headers.",
        )
        too_large.add_metric([], float(self.stats.headers_too_large))
        return [timeouts, too_large]


class _AuthFeedCollector(Collector):
    """The key change feed (``llmgw.auth.broadcast.ChangeListener``), read at scrape time."""

    def __init__(self, feed: Any) -> None:
        self._feed = feed

    def collect(self) -> Iterable[Metric]:
        feed = self._feed
        connected = GaugeMetricFamily(
            "llmgw_auth_feed_connected",
            "1 while key changes from other processes arrive through Redis; 0 means revocations "
            "reach this instance only after key_cache_seconds.",
        )
        connected.add_metric([], 1.0 if feed.connected else 0.0)
        changes = CounterMetricFamily(
            "llmgw_auth_feed_changes", "Key and user changes applied from the Redis feed."
        )
        changes.add_metric([], float(feed.received))
        resyncs = CounterMetricFamily(
            "llmgw_auth_feed_resyncs",
            "Times every cached key was marked for a new look-up (missed change, reconnection).",
        )
        resyncs.add_metric([], float(feed.resyncs))
        errors = CounterMetricFamily(
            "llmgw_auth_feed_errors",
            "Errors and timeouts talking to Redis for the key change feed.",
        )
        errors.add_metric([], float(feed.errors))
        return [connected, changes, resyncs, errors]


class _BudgetCollector(Collector):
    """A ``BudgetTracker``'s budgets in force: spend this period against the limit.

    Labelled by budget id (not the key's or user's name: no personal data in metrics; ``llmgw
    budgets list`` maps ids), scope, period and currency: one series per budget an admin made.
    The spend is this instance's mirror of the shared one (reconciled from Redis or the
    database), so every instance reports about the same value: aggregate with ``max``.
    """

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker

    def collect(self) -> Iterable[Metric]:
        t = self._tracker
        labels = ["budget", "scope", "period", "currency"]
        spend = GaugeMetricFamily(
            "llmgw_budget_spend", "Spend of each budget in its current period.", labels=labels
        )
        limit = GaugeMetricFamily(
            "llmgw_budget_limit", "The amount each budget allows per period.", labels=labels
        )
        for rules in t.rules.values():
            for r in rules:
                values = [str(r.id), r.scope, r.period, r.currency]
                spend.add_metric(values, r.spent)
                limit.add_metric(values, r.amount)
        refused = CounterMetricFamily(
            "llmgw_budget_refused",
            "Requests refused because a hard-stop budget was spent.",
        )
        refused.add_metric([], t.refused)
        return [spend, limit, refused]


class _Hist:
    """One histogram series: per-bucket counts (the last is +Inf) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, size: int) -> None:
        self.counts = [0] * (size + 1)
        self.sum = 0.0


class _HotCollector(Collector):
    """The per-request series of ``Metrics``, as metric families at scrape time."""

    def __init__(self, m: Metrics) -> None:
        self._m = m

    @staticmethod
    def _hist(
        name: str,
        doc: str,
        labels: list[str],
        bounds: tuple[float, ...],
        series: Iterable[tuple[tuple[str, ...], _Hist]],
    ) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=labels)
        les = [repr(float(b)) for b in bounds] + ["+Inf"]  # as prometheus_client writes them
        for values, h in series:
            cumulative, total = [], 0
            for le, n in zip(les, h.counts, strict=True):
                total += n
                cumulative.append((le, float(total)))
            fam.add_metric(list(values), cumulative, h.sum)
        return fam

    def collect(self) -> Iterable[Metric]:
        m = self._m
        requests = CounterMetricFamily(
            "llmgw_requests",
            "Requests answered, by route, status class, provider and model.",
            labels=["route", "status_class", "provider", "model"],
        )
        for (route, status_class, p, model), n in m._requests.items():
            requests.add_metric([route, f"{status_class}xx", p, model], n, created=m._created)
        tokens = CounterMetricFamily(
            "llmgw_tokens",
            "Tokens reported by upstreams, by kind (prompt, completion).",
            labels=["provider", "model", "version", "kind"],
        )
        for (p, model, version), counts in m._tokens.items():
            tokens.add_metric([p, model, version, "prompt"], counts[0], created=m._created)
            tokens.add_metric([p, model, version, "completion"], counts[1], created=m._created)
        cost = CounterMetricFamily(
            "llmgw_cost",
            "Cost of the requests answered, in the provider's currency (configured prices).",
            labels=["provider", "model", "currency"],
        )
        for (p, model, currency), amount in m._cost.items():
            cost.add_metric([p, model, currency], amount, created=m._created)
        in_flight = GaugeMetricFamily("llmgw_requests_in_flight", "Requests being served now.")
        in_flight.add_metric([], m.in_flight)
        streams = GaugeMetricFamily("llmgw_streams_open", "Streaming responses open now.")
        streams.add_metric([], m.open_streams())
        return [
            requests,
            self._hist(
                "llmgw_request_duration_seconds",
                "Time from request start to the last byte of the response.",
                ["route"],
                _LATENCY_BUCKETS,
                m._latency.items(),
            ),
            self._hist(
                "llmgw_upstream_duration_seconds",
                "Time spent in the upstream call (until the last chunk for streams).",
                ["provider", "model", "version"],
                _UPSTREAM_BUCKETS,
                m._upstream.items(),
            ),
            self._hist(
                "llmgw_time_to_first_token_seconds",
                "Time from request start to the first streamed chunk sent to the client.",
                ["provider", "model", "version"],
                _UPSTREAM_BUCKETS,
                m._ttft.items(),
            ),
            tokens,
            cost,
            in_flight,
            streams,
        ]


_KNOWN_VERSIONS = frozenset({"latest", "rc", "deprecated"})  # YandexGPT's branches


def _configured_versions(settings: Settings) -> frozenset[str]:
    """Versions the configuration names: ``model:version`` in models, prices, alias targets."""
    names: list[str] = []
    for p in settings.providers:
        names += [*p.models, *p.prices]
    for cands in settings.aliases.values():
        names += [c if isinstance(c, str) else c.target for c in cands]
    out = set()
    for n in names:
        head, sep, version = n.rpartition(":")
        if sep and head and version and "/" not in version:
            out.add(version)
    return frozenset(out)


class Metrics:
    """The gateway's metrics in their own registry (one per app, so tests can build many apps).

    Update methods run on the event loop (they are not thread-safe; the scrape runs there too).
    """

    def _label(self, settings: Settings) -> None:
        self._providers: frozenset[str] = frozenset(p.name for p in settings.providers)
        self._models: frozenset[tuple[str, str]] = frozenset(
            (p.name, m) for p in settings.providers for m in p.models
        )
        self._versions: frozenset[str] = _KNOWN_VERSIONS | _configured_versions(settings)
        self._currencies: dict[str, str] = {p.name: currency_of(p) for p in settings.providers}

    def set_providers(self, now: Any) -> None:
        """The "providers changed" hook (``server/reload.py``): the label sets widen to the
        stored providers (an admin adds them, so they stay bounded); series already made for a
        provider that is gone stay until the process ends."""
        self._label(now.settings)

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._label(settings)
        self._created = time()
        # Label sets are bounded (config-derived), so are these dicts.
        self._requests: dict[tuple[str, int, str, str], int] = {}
        self._latency: dict[tuple[str], _Hist] = {}
        self._upstream: dict[tuple[str, str, str], _Hist] = {}
        self._ttft: dict[tuple[str, str, str], _Hist] = {}
        self._tokens: dict[tuple[str, str, str], list[int]] = {}
        self._cost: dict[tuple[str, str, str], float] = {}
        self.in_flight = 0
        """Requests being served now (``RequestMiddleware`` counts them)."""
        self.open_streams: Callable[[], int] = lambda: 0
        """Streaming responses open now (``Gateway`` points it at its ``Drain``)."""
        self.receipt = ReceiptStats()
        """Request-receipt deadlines of the server running this app (``llmgw serve`` passes it
        to ``receipt_protocol``)."""
        self.errors = Counter(
            "llmgw_errors",
            "Failed requests by error class.",
            ["error_type"],
            registry=self.registry,
        )
        # OAuth (issue 11): labels are closed sets (grant types, RFC error codes, endpoints).
        self.oauth_issued = Counter(
            "llmgw_oauth_tokens_issued",
            "Access tokens issued by the token endpoint, by grant type.",
            ["grant"],
            registry=self.registry,
        )
        self.oauth_refreshes = Counter(
            "llmgw_oauth_refreshes",
            "Refresh tokens rotated (successful refresh_token grants).",
            registry=self.registry,
        )
        self.oauth_revocations = Counter(
            "llmgw_oauth_revocations",
            "Tokens revoked, by cause (revoke endpoint, refresh or code reuse, admin, logout).",
            ["cause"],
            registry=self.registry,
        )
        self.oauth_failures = Counter(
            "llmgw_oauth_failures",
            "Refused OAuth requests, by endpoint and RFC error code.",
            ["endpoint", "error"],
            registry=self.registry,
        )
        self.registry.register(_HotCollector(self))
        self.registry.register(_ReceiptCollector(self.receipt))

    def watch_usage(self, stats: Callable[[], Mapping[str, object]]) -> None:
        """Export the usage recorder's queue and spool sizes at scrape time."""
        self.registry.register(_StatsCollector(stats))

    def watch_backups(self, stats: Any) -> None:
        """Export the scheduled backups' results (``[backup] interval``) at scrape time."""
        self.registry.register(_BackupCollector(stats))

    def watch_ratelimits(self, limits: Any) -> None:
        """Export a ``KeyLimits``' refusals and its backend's state at scrape time."""
        self.registry.register(_RateLimitCollector(limits))

    def watch_budgets(self, tracker: Any) -> None:
        """Export a ``BudgetTracker``'s spend and limit per budget at scrape time."""
        self.registry.register(_BudgetCollector(tracker))

    def watch_auth_feed(self, feed: Any) -> None:
        """Export the key change feed's link state and counters at scrape time."""
        self.registry.register(_AuthFeedCollector(feed))

    def provider_label(self, provider: str | None) -> str:
        """A configured provider name, ``none`` when there is none, else ``other``."""
        if not provider:
            return NONE
        return provider if provider in self._providers else OTHER

    def model_label(self, provider: str | None, model: str | None) -> str:
        """A configured model of that provider, ``none`` when unknown yet, else ``other``."""
        if not model:
            return NONE
        return model if (provider, model) in self._models else OTHER

    def version_label(self, version: str | None) -> str:
        """A known model version (``latest``, ``rc``, ``deprecated`` or one the configuration
        names), ``none`` without one, else ``other``: clients choose versions, so the label set
        stays bounded by the configuration."""
        if not version:
            return NONE
        return version if version in self._versions else OTHER

    def observe_request(
        self,
        route: str,
        status: int,
        seconds: float,
        provider: str | None,
        model: str | None,
        error_type: str | None,
    ) -> None:
        """Count one finished request."""
        route = route if route in ROUTES else OTHER
        key = (
            route,
            status // 100,
            self.provider_label(provider),
            self.model_label(provider, model),
        )
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        h = self._latency.get((route,))
        if h is None:
            h = self._latency[(route,)] = _Hist(len(_LATENCY_BUCKETS))
        h.counts[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        h.sum += seconds
        if error_type is not None:
            self.errors.labels(error_type if error_type in ERROR_TYPES else OTHER).inc()

    def observe_upstream(
        self,
        provider: str | None,
        model: str | None,
        seconds: float,
        prompt_tokens: int,
        completion_tokens: int,
        ttft: float | None = None,
        version: str | None = None,
    ) -> None:
        """Record one upstream call's duration, tokens and (for streams) time to first token,
        per (provider, model, version)."""
        v = version if version in self._versions else (OTHER if version else NONE)  # inlined
        key = (self.provider_label(provider), self.model_label(provider, model), v)
        h = self._upstream.get(key)
        if h is None:
            h = self._upstream[key] = _Hist(len(_UPSTREAM_BUCKETS))
            self._ttft[key] = _Hist(len(_UPSTREAM_BUCKETS))
            self._tokens[key] = [0, 0]
        h.counts[bisect_left(_UPSTREAM_BUCKETS, seconds)] += 1
        h.sum += seconds
        if ttft is not None:
            t = self._ttft[key]
            t.counts[bisect_left(_UPSTREAM_BUCKETS, ttft)] += 1
            t.sum += ttft
        if prompt_tokens > 0 or completion_tokens > 0:  # counters never go down
            tokens = self._tokens[key]
            tokens[0] += max(prompt_tokens, 0)
            tokens[1] += max(completion_tokens, 0)

    def observe_cost(self, provider: str | None, model: str | None, cost: Any) -> None:
        """Add one request's cost (``Decimal`` or float; nothing for none or zero) to
        ``llmgw_cost_total`` in its provider's currency (``other`` for a provider neither the
        configuration nor the stored providers name)."""
        if not cost:
            return
        key = (
            self.provider_label(provider),
            self.model_label(provider, model),
            self._currencies.get(provider or "", OTHER),
        )
        self._cost[key] = self._cost.get(key, 0.0) + float(cost)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
