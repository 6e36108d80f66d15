"""Starts the alert service in the gateway's lifespan and exports its metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmgw.alerts.service import AlertService
from llmgw.alerts.stats import AlertStats

if TYPE_CHECKING:
    from llmgw.alerts.classifier import Classifier
    from llmgw.alerts.llm import RouterCompleter
    from llmgw.alerts.worker import ClassifyStep
    from llmgw.config import AlertsSettings
    from llmgw.server.reload import ProviderSet
    from llmgw.server.state import Gateway

__all__ = ["start_alerts"]

log = logging.getLogger("llmgw.alerts")


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
        pubs = CounterMetricFamily(
            "llmgw_alert_publications",
            "Publishing attempts by target type and result.",
            labels=["type", "result"],
        )
        for (kind, result), n in st.publications.items():
            pubs.add_metric([kind, result], n)
        out.append(pubs)
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


class _ClassifierSwitch:
    """Subscribed to the "providers changed" hook: gives the classifier's completer the new
    resolver, and turns classification on while ``alerts.model`` resolves and off (alerts
    stored unclassified, as in mode ``transparent``) while it does not, saying so once."""

    def __init__(
        self,
        complete: RouterCompleter,
        classifier: Classifier,
        steps: tuple[ClassifyStep, ...],
        a: AlertsSettings,
    ) -> None:
        self.complete, self.classifier, self.steps, self.a = complete, classifier, steps, a
        self.warned = False

    def __call__(self, now: ProviderSet) -> None:
        from llmgw.errors import LlmgwError

        self.complete.resolver = now.resolver
        if self.a.mode == "transparent":
            return
        try:
            now.resolver.candidates(self.a.model)
            usable = True
        except LlmgwError:
            usable = False
        for step in self.steps:
            step.classifier = self.classifier if usable else None
        if usable:
            self.warned = False
        elif not self.warned and self.a.webhook_token is not None:  # no webhook: nobody to warn
            self.warned = True
            log.warning(
                "alerts.model %r is not a configured alias or model: alerts are stored"
                " unclassified (as in mode transparent) until it is",
                self.a.model,
            )


async def start_alerts(g: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """Build ``g.alerts`` and start its worker; register its metrics and its shutdown on ``stack``.

    The classifier asks ``alerts.model`` through ``g.router`` in this process (no HTTP hop), so
    fallback, breakers, the rate limiter, usage and cost apply to it like to any request.
    """
    from functools import partial

    from llmgw.alerts.cache import DatabaseCache, RedisCache
    from llmgw.alerts.classifier import ClassificationCache, Classifier
    from llmgw.alerts.llm import RouterCompleter
    from llmgw.alerts.queries import AlertHistory
    from llmgw.alerts.queue import JobQueue
    from llmgw.alerts.retention import run_retention
    from llmgw.alerts.store_pg import tend
    from llmgw.alerts.summary import fold
    from llmgw.alerts.worker import AlertWorker, ClassifyStep, Step

    s = g.settings
    a = s.alerts
    service = AlertService(g.engine, a)
    g.alerts = service
    stack.callback(service.close)
    g.metrics.registry.register(_AlertCollector(service))
    cache: ClassificationCache
    if s.redis_url is not None:
        redis_cache = RedisCache(s.redis_url.get_secret_value())
        stack.push_async_callback(redis_cache.aclose)
        cache = redis_cache
    else:
        cache = DatabaseCache(g.engine)
    complete = RouterCompleter(
        g.router, g.resolver, g.recorder, model=a.model, limiter=g.limiter, rpm=a.rpm,
        bucket=f"alerts:classifier:{a.cache_prefix}",  # one deployment's, not a shared Redis's
    )  # fmt: skip
    classifier = Classifier(complete, cache, a, service.stats)
    history = AlertHistory(g.engine)
    service.history = history
    from llmgw.alerts.publishers.step import Publishing, PublishStep

    publishing = Publishing(g.engine, a, service.stats)
    publishing.wake = service.wake
    service.start_publishing(publishing)
    stack.push_async_callback(publishing.aclose)
    classify = ClassifyStep(history, classifier, a)
    reclassify = ClassifyStep(history, classifier, a, use_cache=False)
    # The classifier follows the provider set: alerts.model may name a stored alias or a stored
    # provider's model, which appears (or goes) without a restart.
    stack.callback(
        g.providers_changed.subscribe(
            _ClassifierSwitch(complete, classifier, (classify, reclassify), a).__call__
        )
    )
    steps: dict[str, Step] = {
        "classify": classify,
        "reclassify": reclassify,
        "publish": PublishStep(publishing, history, "fire"),
        "publish_resolve": PublishStep(publishing, history, "resolve"),
    }
    pg = g.engine.dialect.name == "postgresql"
    worker = AlertWorker(
        JobQueue(g.engine),
        steps,
        a,
        service.stats,
        maintenance=partial(run_retention, g.engine, a, service.stats),
        fold=partial(fold, g.engine) if pg else None,
        tend=partial(tend, g.engine) if pg else None,
        clock=g.clock,
    )
    service.worker = worker
    worker.start()
    stack.push_async_callback(worker.aclose)
    if g.engine.dialect.name == "postgresql":  # jobs queued by other instances wake it too
        from llmgw.alerts.wakeups import JobAnnouncer, JobNotifications
        from llmgw.storage.tcp import with_tcp_checks

        url = g.engine.url.set(drivername="postgresql")
        conninfo = with_tcp_checks(
            url.render_as_string(hide_password=False), s.database.dead_connection_timeout
        )
        wakeups = JobNotifications(conninfo, worker.wake)
        service.wakeups = wakeups
        wakeups.start()
        stack.push_async_callback(wakeups.aclose)
        announcer = JobAnnouncer(conninfo)
        service.announce_jobs(announcer)
        stack.push_async_callback(announcer.aclose)
    if a.kubernetes.enabled:
        from llmgw.alerts.discovery import SecretDiscovery

        discovery = SecretDiscovery(
            a.kubernetes, partial(service.set_discovered_targets, "kubernetes")
        )
        service.discovery = discovery
        discovery.start()
        stack.push_async_callback(discovery.aclose)
    if a.alertmanager_urls:
        from llmgw.alerts.silences import SilenceSync

        silences = SilenceSync(g.engine, a.alertmanager_urls)
        silences.start(a.silence_interval)
        stack.push_async_callback(silences.aclose)
    if a.breaker_alerts:
        from llmgw.alerts.internal import BreakerAlerts

        health = BreakerAlerts(service.store, wake=service.wake)
        service.breaker_alerts = health
        health.start()
        g.router.breakers.listen(health.on_change)
        stack.push_async_callback(health.aclose)
        stack.callback(g.router.breakers.listen, None)
