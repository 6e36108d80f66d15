"""The gateway's long-lived services, built in the app's lifespan and shared by the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmgw.config import Settings
from llmgw.routing.resolve import Resolver
from llmgw.server.disconnect import Disconnects
from llmgw.server.metrics import Metrics
from llmgw.server.reload import ProvidersChanged, ProviderSet
from llmgw.server.scrub import Scrubber
from llmgw.server.streaming import Drain

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from llmgw.alerts.service import AlertService
    from llmgw.auth.broadcast import ChangeListener, ChangePublisher
    from llmgw.auth.changes import AuthChange
    from llmgw.auth.keys import KeyService
    from llmgw.budgets.tracker import BudgetTracker
    from llmgw.identity.tokens import TokenService
    from llmgw.providers.base import Provider
    from llmgw.ratelimit import RateLimiter
    from llmgw.routing.catalog import ModelCatalog
    from llmgw.routing.health import HealthWriter
    from llmgw.routing.router import Router
    from llmgw.server.auth import KeyCache
    from llmgw.server.ratelimits import KeyLimits
    from llmgw.server.reload import ProviderReloader
    from llmgw.storage.backup_schedule import BackupScheduler
    from llmgw.usage.recorder import UsageRecorder

__all__ = ["RECENT_REQUESTS", "Gateway", "ReadyCheck"]

RECENT_REQUESTS = 1000
"""How many finished requests the admin API's recent-requests view keeps in memory."""

log = logging.getLogger("llmgw.server")


class ReadyCheck:
    """Database reachable and migrations current, checked in a thread at most every ``interval`` s."""

    def __init__(
        self, engine: Engine, *, interval: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._clock = clock
        self._checked = -1e9
        self._problems: list[str] = ["not checked yet"]
        self._lock = asyncio.Lock()

    def _check(self) -> list[str]:
        from llmgw.errors import DatabaseError
        from llmgw.storage.db import check_connection
        from llmgw.storage.schema import is_current

        try:
            check_connection(self._engine)
        except DatabaseError:
            return ["database unreachable"]
        try:
            if not is_current(self._engine):
                return ["database migrations are not current (run `llmgw db upgrade`)"]
        except Exception:  # noqa: BLE001 - any failure here means "not ready"
            return ["cannot read the migration state"]
        return []

    async def problems(self) -> list[str]:
        """Reasons the database side is not ready (empty when ready); cached for ``interval``."""
        if self._clock() - self._checked < self._interval:
            return self._problems
        async with self._lock:
            if self._clock() - self._checked >= self._interval:
                self._problems = await asyncio.to_thread(self._check)
                self._checked = self._clock()
        return self._problems


class Gateway:
    """Everything a request needs; ``start`` builds the services, ``stop`` flushes and closes them."""

    engine: Engine
    keys: KeyService
    tokens: TokenService
    auth: KeyCache
    recorder: UsageRecorder
    providers: dict[str, Provider]
    router: Router
    health_writer: HealthWriter
    catalog: ModelCatalog
    ready: ReadyCheck
    limiter: RateLimiter
    limits: KeyLimits
    budgets: BudgetTracker
    alerts: AlertService

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        """Monotonic seconds for every cache, cooldown and interval (tests pass a fake clock)."""
        self.metrics = Metrics(settings)
        self.drain = Drain()
        self.metrics.open_streams = lambda: self.drain.open_streams
        self.resolver = Resolver(settings)
        self.max_body = settings.server.max_body_bytes
        self.refuse_unrecordable = settings.usage.on_unrecordable == "refuse"
        self.started = False
        self._running: contextlib.AsyncExitStack | None = None
        self.disconnects = Disconnects()
        """Cancels upstream calls whose client hung up (``Disconnects.until``)."""
        self.scrubber = Scrubber()
        """Removes the running providers' credentials from error answers."""
        self.recent: deque[tuple[Any, str | None]] = deque(maxlen=RECENT_REQUESTS)
        """The newest finished requests (usage event, key prefix) for ``/admin/v1/usage/recent``:
        one append per request in accounting, bounded, never the database."""
        self.feed: ChangeListener | None = None
        """Key changes from other processes (Redis); ``None`` without ``redis_url``."""
        self.conversations: Any = None
        """The ``ConversationStore`` of the conversation routes, made on their first use."""
        self.providers_changed = ProvidersChanged(ProviderSet(settings, self.resolver))
        """The one hook fired when the provider or alias set changes (``server/reload.py``)."""
        self.providers_changed.subscribe(self.metrics.set_providers)
        self.reloader: ProviderReloader | None = None
        """Applies providers stored in the database; ``None`` when off."""
        self.backups: BackupScheduler | None = None
        """Scheduled backups (``[backup] interval``); ``None`` when off."""
        self.publisher: ChangePublisher | None = None
        """Announces key and user changes made through the admin API to other instances
        (Redis); ``None`` without ``redis_url``. Closed at shutdown."""

    async def start(self) -> None:
        """Open the database, the key cache, the usage recorder and the upstream providers.

        Each service that starts registers its own shutdown on an ``AsyncExitStack`` at once, so
        a failure part-way (a bad ``ca_bundle`` after the usage writer started) unwinds exactly
        what had started, in reverse, before the error propagates.
        """
        from llmgw.auth.keys import KeyService
        from llmgw.budgets.tracker import BudgetTracker
        from llmgw.identity.tokens import TokenService
        from llmgw.notify import Notifier
        from llmgw.providers.registry import SecretResolver, build_providers
        from llmgw.ratelimit import RateLimiter
        from llmgw.routing.catalog import ModelCatalog
        from llmgw.routing.health import HealthWriter
        from llmgw.routing.router import build_router
        from llmgw.server.auth import Credentials, KeyCache
        from llmgw.server.quotas import QuotaBook
        from llmgw.server.ratelimits import KeyLimits
        from llmgw.storage.db import make_engine
        from llmgw.usage.pricing import currency_of
        from llmgw.usage.recorder import UsageRecorder

        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            # First, before anything runs: a [ratelimit] mistake is a ConfigError with nothing
            # to undo.
            redis_url = s.redis_url.get_secret_value() if s.redis_url is not None else None
            self.limiter = RateLimiter(s.ratelimit, redis_url, clock=self.clock)
            stack.push_async_callback(self.limiter.aclose)
            self.engine = make_engine(
                s.database_url,
                pool_size=s.database.pool_size,
                connect_timeout=s.database.connect_timeout,
                dead_connection_timeout=s.database.dead_connection_timeout,
            )
            stack.callback(self.engine.dispose)
            self.keys = KeyService(self.engine)
            self.tokens = TokenService.from_settings(s, self.engine, on_change=self.announce)
            self.auth = KeyCache(
                Credentials(
                    self.keys,
                    self.tokens,
                    token_rpm=s.identity.token_rpm,
                    token_tpm=s.identity.token_tpm,
                ),
                ttl=s.server.key_cache_seconds,
                clock=self.clock,
            )
            self._loop = asyncio.get_running_loop()
            # record() on the loop is a queue put; the writer thread polls while a batch fills,
            # so it is not woken per request (no loop-side buffer needed).
            self.recorder = UsageRecorder(self.engine, s.usage, s.spool_dir)
            await asyncio.to_thread(self.recorder.start)
            stack.push_async_callback(asyncio.to_thread, self.recorder.close)
            self.metrics.watch_usage(self.recorder.stats)
            self.providers = build_providers(s, SecretResolver())
            stack.push_async_callback(self._close_providers)
            self.scrubber.add(
                secret
                for provider in self.providers.values()
                for secret in getattr(getattr(provider, "transport", None), "secrets", ())
            )
            stack.callback(self.scrubber.clear)
            self.router = build_router(
                s.routing,
                self.providers,
                self.resolver.candidates,
                clock=self.clock,
                passthrough=[p.name for p in s.providers if not p.models],
                # Only names the upstream itself lists get state of their own (never a caller's
                # string); the catalog is built below, before any request is served.
                offered=lambda provider, model: self.catalog.offers(provider, model),
            )
            for p in s.providers:  # configured models show as "unknown" before their first request
                for m in p.models:
                    self.router.health.register(p.name, m)
            self.health_writer = HealthWriter(
                self.engine, self.router.health, interval=s.routing.health_write_interval
            )
            self.health_writer.start()
            stack.push_async_callback(asyncio.to_thread, self.health_writer.stop)
            self.catalog = ModelCatalog(
                s, self.providers, interval=s.routing.models_refresh_interval, clock=self.clock
            )
            self.catalog.start()
            stack.push_async_callback(self.catalog.aclose)
            if s.routing.providers_reload_interval > 0:
                from llmgw.server.reload import ProviderReloader

                self.reloader = ProviderReloader(self, interval=s.routing.providers_reload_interval)
                await self.reloader.start()
                stack.push_async_callback(self.reloader.aclose)
            self.ready = ReadyCheck(self.engine, clock=self.clock)
            await self.limiter.start()
            self.limits = KeyLimits(self.limiter)
            stack.push_async_callback(self.limits.wait_settled)
            self.budgets = BudgetTracker(
                s.budgets,
                self.engine,
                Notifier(s.notify),
                {p.name: currency_of(p) for p in s.providers},
                redis_url=redis_url,
                on_refresh=lambda quotas, hard: self.limits.set_quotas(QuotaBook(quotas), hard),
                # the resolver of the moment (stored providers replace it): prices the hold
                cost=lambda *a: self.resolver.cost(*a),
                instances=s.ratelimit.instances,
            )
            self.limits.budgets = self.budgets
            budgets = self.budgets
            stack.callback(  # stored providers' spend counts against budgets like any other
                self.providers_changed.subscribe(
                    lambda now: setattr(
                        budgets,
                        "currencies",
                        {p.name: currency_of(p) for p in now.settings.providers},
                    )
                )
            )
            self.metrics.watch_budgets(self.budgets)
            await self.budgets.start()
            stack.push_async_callback(self.budgets.aclose)
            self.metrics.watch_ratelimits(self.limits)
            self.auth.start()
            stack.push_async_callback(self.auth.close)
            if s.backup.interval > 0:
                from llmgw.storage.backup_schedule import BackupScheduler

                self.backups = BackupScheduler(
                    s.database_url,
                    s.backup.dir or s.home / "backups",
                    keep=s.backup.keep,
                    interval=s.backup.interval,
                    pace=s.backup.pace,
                    check=s.backup.check,
                    method=s.backup.method,
                    cpus=s.backup.cpus,
                )
                self.backups.start()
                stack.push_async_callback(asyncio.to_thread, self.backups.stop)
                self.metrics.watch_backups(self.backups.stats)
            if (
                s.usage.rollup_interval > 0
                or s.usage.retention_days is not None
                or s.reports.enabled
            ):
                from llmgw.usage.maintenance import UsageMaintenance

                upkeep = UsageMaintenance(
                    self.engine, s.usage, jobs=[self._report_job()] if s.reports.enabled else []
                )
                upkeep.start()
                stack.push_async_callback(asyncio.to_thread, upkeep.stop)
            if s.alerts.enabled:
                from llmgw.server.alerting import start_alerts

                await start_alerts(self, stack)
            if redis_url is not None and s.auth.broadcast:
                from llmgw.auth.broadcast import ChangeListener, ChangePublisher

                self.feed = ChangeListener(
                    redis_url,
                    self.auth.apply,
                    prefix=s.auth.redis_prefix,
                    check_interval=s.auth.check_interval,
                    timeout=s.auth.redis_timeout,
                )
                self.feed.start()
                stack.push_async_callback(self.feed.aclose)
                self.metrics.watch_auth_feed(self.feed)
                self.publisher = ChangePublisher(
                    redis_url,
                    prefix=s.auth.redis_prefix,
                    timeout=s.auth.redis_timeout,
                    client_name="llmgw-server-publisher",
                )
                stack.callback(self._close_publisher)
            self._running = stack.pop_all()  # started: unwound by stop(), not here
        self.started = True

    def _report_job(self) -> Any:
        """The scheduled reports (``[reports]``), built from this server's database."""
        from llmgw.admin.local import LocalAdmin
        from llmgw.admin.ops import Actor
        from llmgw.notify.channels import Notifier
        from llmgw.usage.report_data import build
        from llmgw.usage.report_schedule import ReportJob

        s = self.settings
        admin = LocalAdmin(self.engine, Actor.local(), "server", settings=s)
        return ReportJob(
            self.engine,
            s.reports,
            Notifier(s.notify),
            lambda period, day: build(admin, period, day),
        )

    @property
    def live_settings(self) -> Settings:
        """``settings`` with the enabled stored providers and aliases added (the current
        ``ProviderSet``): what prices, currencies and the admin API's lists use."""
        return self.providers_changed.current.settings

    def flush_usage(self, timeout: float = 10.0) -> bool:
        """Everything recorded so far is in the database or the spool (blocks; not on the loop)."""
        return self.recorder.flush(timeout)

    async def stop(self) -> None:
        """Flush last-used times and usage, close upstream sessions and the database."""
        running, self._running = self._running, None
        self.started = False
        if running is not None:
            await running.aclose()

    def announce(self, change: AuthChange) -> None:
        """Make ``change`` (revoked keys or tokens, changed users) known: to this instance's
        credential cache at once, to the others through Redis when configured. Callable from
        any thread (the services call it after their commit, in a worker thread)."""
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.auth.apply, change)
        if self.publisher is not None:
            self.publisher.publish(change)

    def _close_publisher(self) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            publisher.close()

    async def _close_providers(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.aclose()
            except Exception as exc:  # noqa: BLE001 - keep closing the others
                log.warning("closing provider %s failed: %s", provider.name, type(exc).__name__)
