"""Prometheus metrics with bounded label sets: values come from the config, never from the client."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from llmgw.config import Settings

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
        for name in ("queued", "written", "spooled", "spool_records"):
            value = stats.get(name)
            if isinstance(value, int | float):
                g = GaugeMetricFamily(f"llmgw_usage_{name}", f"Usage recorder: {name}.")
                g.add_metric([], float(value))
                out.append(g)
        return out


class Metrics:
    """The gateway's metrics in their own registry (one per app, so tests can build many apps)."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._providers = frozenset(p.name for p in settings.providers)
        self._models = frozenset((p.name, m) for p in settings.providers for m in p.models)
        r = self.registry
        self.requests = Counter(
            "llmgw_requests",
            "Requests answered, by route, status class, provider and model.",
            ["route", "status_class", "provider", "model"],
            registry=r,
        )
        self.latency = Histogram(
            "llmgw_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "llmgw_upstream_duration_seconds",
            "Time spent in the upstream call (until the last chunk for streams).",
            ["provider", "model"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "llmgw_time_to_first_token_seconds",
            "Time from request start to the first streamed chunk sent to the client.",
            ["provider", "model"],
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "llmgw_tokens",
            "Tokens reported by upstreams, by kind (prompt, completion).",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.errors = Counter(
            "llmgw_errors", "Failed requests by error class.", ["error_type"], registry=r
        )
        self.in_flight = Gauge("llmgw_requests_in_flight", "Requests being served now.", registry=r)
        self.streams = Gauge("llmgw_streams_open", "Streaming responses open now.", registry=r)
        # Label children cached per label set (label values are config-derived, so bounded).
        self._children: dict[tuple[str, int, str, str], tuple[Any, Any]] = {}
        self._upstream_children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}

    def watch_usage(self, stats: Callable[[], Mapping[str, object]]) -> None:
        """Export the usage recorder's queue and spool sizes at scrape time."""
        self.registry.register(_StatsCollector(stats))

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
        p = self.provider_label(provider)
        m = self.model_label(provider, model)
        key = (route, status // 100, p, m)
        children = self._children.get(key)
        if children is None:  # label sets are bounded (config-derived), so is this cache
            children = (
                self.requests.labels(route, f"{status // 100}xx", p, m),
                self.latency.labels(route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
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
    ) -> None:
        """Record one upstream call's duration, tokens and (for streams) time to first token."""
        p = self.provider_label(provider)
        m = self.model_label(provider, model)
        children = self._upstream_children.get((p, m))
        if children is None:
            children = (
                self.upstream_latency.labels(p, m),
                self.ttft.labels(p, m),
                self.tokens.labels(p, m, "prompt"),
                self.tokens.labels(p, m, "completion"),
            )
            self._upstream_children[(p, m)] = children
        children[0].observe(seconds)
        if ttft is not None:
            children[1].observe(ttft)
        if prompt_tokens:
            children[2].inc(prompt_tokens)
        if completion_tokens:
            children[3].inc(completion_tokens)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
