"""Starts the alert service in the gateway's lifespan and exports its metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmgw.alerts.service import AlertService
from llmgw.alerts.stats import AlertStats

if TYPE_CHECKING:
    from llmgw.server.state import Gateway

__all__ = ["start_alerts"]


class _AlertCollector(Collector):
    """The alert service's counters, read at scrape time."""

    def __init__(self, service: AlertService) -> None:
        self._service = service

    def collect(self) -> Iterable[Metric]:
        st: AlertStats = self._service.stats
        out: list[Metric] = []
        deliveries = CounterMetricFamily(
            "llmgw_alert_deliveries",
            "Alertmanager webhook deliveries by result.",
            labels=["result"],
        )
        for name, n in st.deliveries.items():
            deliveries.add_metric([name], n)
        out.append(deliveries)
        changes = CounterMetricFamily(
            "llmgw_alert_changes",
            "Alert occurrences created or changed by deliveries.",
            labels=["change"],
        )
        for name, n in st.alerts.items():
            changes.add_metric([name], n)
        out.append(changes)
        cls = CounterMetricFamily(
            "llmgw_alert_classifications", "Classification attempts by result.", labels=["result"]
        )
        for name, n in st.classifications.items():
            cls.add_metric([name], n)
        out.append(cls)
        cache = CounterMetricFamily(
            "llmgw_alert_cache_lookups", "Classification cache look-ups.", labels=["result"]
        )
        for name, n in st.cache.items():
            cache.add_metric([name], n)
        out.append(cache)
        deleted = CounterMetricFamily(
            "llmgw_alert_retention_deleted", "Rows deleted by retention.", labels=["kind"]
        )
        for name, n in st.retention_deleted.items():
            deleted.add_metric([name], n)
        out.append(deleted)
        errors = CounterMetricFamily(
            "llmgw_alert_worker_errors", "Unexpected failures of the alert worker loop."
        )
        errors.add_metric([], st.worker_errors)
        out.append(errors)
        worker = self._service.worker
        if worker is not None:
            depth = GaugeMetricFamily(
                "llmgw_alert_queue_depth",
                "Alert jobs waiting or running (last look).",
                labels=["state"],
            )
            for state, n in worker.depth.items():
                depth.add_metric([state], n)
            out.append(depth)
        lat = sorted(st.classify_seconds)
        if lat:
            g = GaugeMetricFamily(
                "llmgw_alert_classify_seconds",
                "Classification call latency over the newest calls.",
                labels=["quantile"],
            )
            for q in (0.5, 0.9, 0.99):
                g.add_metric([str(q)], lat[min(len(lat) - 1, int(q * len(lat)))])
            out.append(g)
        return out


async def start_alerts(g: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """Build ``g.alerts``; register its metrics and its shutdown on ``stack``."""
    g.alerts = AlertService(g.engine, g.settings.alerts)
    g.metrics.registry.register(_AlertCollector(g.alerts))
