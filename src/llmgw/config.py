"""Settings: one object built once at the entry point, from flags, env, a TOML file and defaults.

Precedence, highest first: command-line flags > ``LLMGW_*`` environment variables (``__`` for
nesting, e.g. ``LLMGW_SERVER__PORT``) > the TOML file (``--config FILE``, else ``$LLMGW_CONFIG``,
else ``$LLMGW_HOME/config.toml``) > defaults. ``load_settings`` also records which layer gave
each value, for ``llmgw config show``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmgw.config_layers import config_path, default_home, env_layer, merge, read_toml
from llmgw.errors import ConfigError

__all__ = [
    "AlertsSettings",
    "AliasTarget",
    "AuthSettings",
    "BudgetSettings",
    "DatabaseSettings",
    "IdentitySettings",
    "LoadedSettings",
    "LogSettings",
    "ModelInfo",
    "ModelPrice",
    "NotifyChannel",
    "NotifySettings",
    "KubernetesDiscoverySettings",
    "ProviderConfig",
    "PublishRoute",
    "PublishTarget",
    "RateLimitSettings",
    "RoutingSettings",
    "ServerSettings",
    "Settings",
    "UsageSettings",
    "default_home",
    "load_settings",
    "parse_cpu_list",
]

Source = Literal["default", "file", "env", "flag"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    """Where llmgw keeps users, keys and usage."""

    url: SecretStr | None = None
    """SQLAlchemy or plain URL (``postgresql://...``); unset means SQLite at ``$LLMGW_HOME/llmgw.db``."""
    pool_size: int = Field(default=10, ge=1, le=200)
    """Connections kept open per process (PostgreSQL)."""
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    """Seconds to wait for a connection before the database counts as unreachable."""
    dead_connection_timeout: float = Field(default=30.0, ge=0, le=3600)
    """Seconds a PostgreSQL connection may go silent (data unacknowledged, keepalive probes
    unanswered: a dropped network, a server host gone) before the call on it fails and the
    connection is replaced; 0 leaves it to the OS (many minutes, or hours on an idle connection).
    A slow query on a live server is never cut (the server's TCP stack keeps answering)."""


class ServerSettings(_Section):
    """The HTTP server started by ``llmgw serve``."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes."""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest accepted request body; bigger bodies get 413."""
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest request head (URL plus header names and values); bigger gets 431 and a close, before
    authentication. Memory per connection stays near this bound."""
    max_headers: int = Field(default=100, ge=8, le=10_000)
    """Most header lines in one request; more gets 431 and a close."""
    request_receipt_timeout: float = Field(default=30.0, ge=1, le=3600)
    """Seconds a client may take to send a request's headers (from its first byte), and again its
    body; past either, 408 (or, if already answered, a close) and the connection is closed. Idle
    time between requests is not counted (5 s keep-alive), nor is the response: streams are unaffected."""
    drain_seconds: float = Field(default=30.0, ge=0, le=3600)
    """On SIGTERM, how long in-flight requests and streams may take to finish."""
    key_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    """How long an authenticated key is trusted without a database look-up: the revocation bound
    without Redis (with ``redis_url``, changes reach every instance within ~``auth.check_interval``)."""
    access_log: bool = True
    """Write one JSON access-log line per request."""
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` requires ``Authorization: Bearer <token>`` (else 401)."""
    ssl_certfile: Path | None = None
    """PEM certificate chain: ``llmgw serve`` answers HTTPS itself (TLS 1.2+). Reloaded on SIGHUP."""
    ssl_keyfile: Path | None = None
    """PEM private key (unencrypted) of ``ssl_certfile``; unset when the cert file holds the key."""
    hsts_seconds: int = Field(default=0, ge=0, le=63_072_000)
    """With HTTPS, send ``Strict-Transport-Security: max-age=<this>``; 0 sends no header."""

    @field_validator("ssl_keyfile")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("ssl_certfile") is None:
            raise ValueError("ssl_keyfile needs ssl_certfile")
        return value


class LogSettings(_Section):
    """Where ``llmgw serve`` writes its logs (``[log]``; docs/deployment.md#logging)."""

    format: Literal["text", "json"] = "text"
    """``text``: JSON access lines on stdout, other messages as text on stderr. ``json``: every
    line on stdout is one JSON object (access lines and messages alike), for containers."""
    file: Path | None = None
    """Write every line to this file instead (bare metal), rotated by size; one worker only."""
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    """Rotate ``file`` before it grows past this size: ``file`` -> ``file.1`` -> ... ."""
    backups: int = Field(default=5, ge=0, le=100)
    """Rotated files kept (``file.1`` .. ``file.N``); 0 truncates ``file`` instead."""


class AuthSettings(_Section):
    """Key and user changes announced to every instance through Redis (``[auth]``; docs/server.md)."""

    broadcast: bool = True
    """With ``redis_url`` set, announce revocations, rotations and user disables/enables so every
    instance drops the cached key at once (else each trusts it for ``server.key_cache_seconds``)."""
    redis_prefix: str = Field(default="llmgw:auth", pattern=r"^[A-Za-z0-9:_.{}-]{1,100}$")
    """Prefix of the Redis channel (``<prefix>:changes``) and version key (``<prefix>:version``)."""
    check_interval: float = Field(default=0.25, ge=0.01, le=5)
    """Seconds between reads of the version key, which catch an announcement the feed missed."""
    redis_timeout: float = Field(default=0.5, gt=0, le=5)
    """Seconds a Redis call of the feed (or of the CLI's announcement) may take."""


class IdentitySettings(_Section):
    """OAuth 2.0 and JWT access tokens (``[identity]``; docs/auth.md)."""

    issuer: str | None = Field(default=None, max_length=500)
    """The exact ``iss`` of every token and the public base URL of the OAuth endpoints and pages
    (``https://llm.example.com``); unset means ``http://<server.host>:<server.port>``. Every
    instance behind one address must use the same value. An https value also makes the pages'
    cookies ``Secure`` behind a proxy that terminates TLS (docs/auth.md)."""
    audience: str = Field(default="llmgw", min_length=1, max_length=200)
    """The exact ``aud`` of access tokens."""
    access_token_seconds: int = Field(default=900, ge=60, le=86_400)
    """Lifetime of an access token (default 15 minutes)."""
    refresh_token_days: float = Field(default=30.0, gt=0, le=365)
    """Lifetime of a refresh token; each use rotates it and starts a new lifetime."""
    pat_max_days: int = Field(default=366, ge=1, le=3660)
    """Longest lifetime a personal access token may be given (``llmgw tokens create --expires``)."""
    signing_secret: SecretStr | None = None
    """Encrypts the JWT signing keys in the database (at least 32 characters; every instance needs
    the same). Unset: a random secret kept in ``$LLMGW_HOME/identity.key`` (mode 0600)."""
    key_overlap_seconds: int = Field(default=3600, ge=0, le=30 * 86_400)
    """After ``llmgw oauth keys rotate``, how long the old key still verifies tokens (at least
    ``access_token_seconds``; longer while personal access tokens it signed live)."""
    token_rpm: int | None = Field(default=None, ge=1, le=2_000_000_000)
    """Requests per minute of a JWT caller: per user for the access tokens of a login (all of
    the user's sessions together), per client for ``client_credentials``, per token for a
    personal access token created without ``--rpm``. Unset: no limit (as a key without one)."""
    token_tpm: int | None = Field(default=None, ge=1, le=2_000_000_000)
    """Tokens per minute of a JWT caller, counted like ``token_rpm``. Unset: no limit."""


class UsageSettings(_Section):
    """The usage recorder's batching and spool."""

    batch_size: int = Field(default=500, ge=1, le=100_000)
    """Most rows written in one insert."""
    flush_interval: float = Field(default=0.2, gt=0, le=60)
    """Seconds between flushes of a partly filled batch."""
    queue_max: int = Field(default=200_000, ge=100)
    """Records held in memory before new records go straight to the spool."""
    spool_dir: Path | None = None
    """Where failed batches wait for the database; default ``$LLMGW_HOME/spool``."""
    retry_interval: float = Field(default=2.0, gt=0, le=600)
    """Seconds between attempts to replay the spool while the database is down."""
    durability: Literal["process", "power", "memory"] = "process"
    """What a usage record survives before its response leaves: ``process`` (a journal write
    per record: survives ``kill -9``), ``power`` (also a grouped fsync: survives power loss),
    ``memory`` (no journal: the last ``flush_interval`` of records is lost on ``kill -9``)."""
    on_unrecordable: Literal["refuse", "serve"] = "refuse"
    """When neither the database nor the journal can take a record: ``refuse`` billable
    requests with 503 ``usage_unavailable``, or ``serve`` them (records held only in memory)."""
    retention_days: float | None = Field(default=None, gt=0)
    """Days raw usage rows are kept (``llmgw serve`` deletes older ones hourly, once they are
    folded into the rollups); the hourly and daily rollups are kept, so reports over older
    periods still answer (by whole hours). Unset: raw rows are kept for ever."""
    rollup_interval: float = Field(default=60.0, ge=0, le=86_400)
    """Seconds between folds of new usage rows into the rollups by ``llmgw serve`` (reports
    also fold in a long tail before they answer); with several instances on one PostgreSQL
    only the holder of the fold lease folds (usage.md). 0: only reports fold."""


class RoutingSettings(_Section):
    """Fallback, retries, circuit breakers and health (``[routing]``; see docs/routing.md)."""

    max_tracked_models: int = Field(default=256, ge=1, le=100_000)
    """Per provider with ``models = []``: most upstream-listed model names with a breaker and health row of their own (least recently used out); other names share one per provider, shown as ``*``."""
    failure_threshold: int = Field(default=5, ge=1, le=1000)
    """Consecutive upstream failures of one (provider, model) that open its circuit."""
    error_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    """Failure ratio over ``error_rate_window`` that also opens the circuit."""
    error_rate_window: float = Field(default=30.0, gt=0, le=3600)
    """Seconds of outcomes the error rate looks at."""
    error_rate_min_requests: int = Field(default=20, ge=1)
    """Outcomes needed in the window before the error rate can open the circuit."""
    cooldown: float = Field(default=30.0, ge=0, le=3600)
    """Seconds an open circuit fails fast before letting a half-open probe through."""
    max_cooldown: float = Field(default=300.0, ge=0, le=86400)
    """Upper bound of the cooldown, which doubles each time a probe fails."""
    half_open_probes: int = Field(default=1, ge=1, le=100)
    """Requests let through at once while a circuit is half-open."""
    max_retries: int = Field(default=2, ge=0, le=10)
    """Retries per request once every candidate was tried (0 disables retries)."""
    backoff_base: float = Field(default=0.1, ge=0, le=60)
    """Seconds: ceiling of the first retry's jittered backoff; it doubles per retry."""
    backoff_max: float = Field(default=2.0, ge=0, le=300)
    """Seconds: largest backoff, and the longest upstream ``Retry-After`` that is waited out."""
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=10)
    """Retries to a provider as a share of its requests over ``retry_budget_window``."""
    retry_budget_min_per_second: float = Field(default=0.5, ge=0, le=1000)
    """Retries per second always allowed, whatever the traffic."""
    retry_budget_window: float = Field(default=10.0, ge=1, le=3600)
    """Seconds of traffic the retry budget looks at."""
    health_alpha: float = Field(default=0.2, gt=0, le=1)
    """Weight of the newest sample in the EWMA latency and error rate."""
    health_write_interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between writes of changed health rows to ``provider_status``."""
    models_refresh_interval: float = Field(default=300.0, ge=1, le=86400)
    """Seconds between background refreshes of the model lists of providers without ``models``."""
    providers_reload_interval: float = Field(default=1.0, ge=0, le=3600)
    """Seconds between checks for providers added, changed or removed in the database (``llmgw providers add``); 0 turns stored providers off."""


class TuiSettings(_Section):
    """``llmgw dash``, the admin dashboard (``[tui]``; docs/tui.md)."""

    keys: dict[str, str] = Field(default_factory=dict)
    """Key bindings to change: binding id -> keys, comma-separated (``quit = "ctrl+q"``,
    ``screen-chat = "7,c"``); ``?`` in the dashboard lists every id. An unknown id is an error."""

    @field_validator("keys")
    @classmethod
    def _keys_named(cls, v: dict[str, str]) -> dict[str, str]:
        for binding, keys in v.items():
            if not keys.strip() or any(not k.strip() for k in keys.split(",")):
                raise ValueError(f"{binding}: give one or more keys, comma-separated")
        return v


class NotifyChannel(_Section):
    """One notification channel (``[notify.channels.<name>]``; see docs/notifications.md)."""

    name: str = ""
    """Set from the table's name (``ops-slack`` in ``[notify.channels.ops-slack]``)."""
    kind: Literal["webhook", "slack", "email"]
    """``webhook``: JSON POST of the notification; ``slack``: an incoming webhook; ``email``: SMTP."""
    url: SecretStr | None = None
    """The webhook or Slack incoming-webhook URL (a secret: never logged)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers for ``webhook`` (an ``Authorization`` token, say)."""
    smtp_host: str | None = None
    """SMTP server for ``email`` (default ``localhost``)."""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    """SMTP port (25, 587 with ``starttls``, 465 with ``tls``)."""
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    """``starttls`` upgrades the connection; ``tls`` is implicit TLS (port 465)."""
    username: str | None = None
    """SMTP login (none: no authentication)."""
    password: SecretStr | None = None
    """SMTP password (``LLMGW_NOTIFY__CHANNELS__<NAME>__PASSWORD`` keeps it out of the file)."""
    sender: str | None = None
    """The ``From`` address (default ``llmgw@localhost``)."""
    to: list[str] = Field(default_factory=list)
    """Recipients of ``email``."""
    timeout: float = Field(default=10.0, gt=0, le=300)
    """Seconds one attempt may take."""
    retries: int = Field(default=3, ge=0, le=20)
    """Attempts after the first (4xx answers other than 408/429 are not retried)."""
    retry_backoff: float = Field(default=1.0, ge=0, le=3600)
    """Seconds before the first retry; doubled for each next one."""


class NotifySettings(_Section):
    """Named notification channels (``[notify.channels.<name>]``), used by budgets and reports."""

    channels: dict[str, NotifyChannel] = Field(default_factory=dict)
    """Channel name -> its settings."""


class BudgetSettings(_Section):
    """Spend budgets per key and user (``[budgets]``; see docs/budgets.md)."""

    enabled: bool = True
    """Enforce and watch the budgets stored in the database."""
    notify: list[str] = Field(default_factory=list)
    """Channels (``[notify.channels]`` names) that receive threshold notifications."""
    refresh_interval: float = Field(default=1.0, gt=0, le=300)
    """Seconds between reads of the shared spend (Redis) and the budget definitions (database)."""
    reconcile_interval: float = Field(default=60.0, gt=0, le=86_400)
    """Seconds between reconciliations of the shared spend with the usage in the database."""
    redis_prefix: str = Field(default="llmgw:budget", pattern=r"^[A-Za-z0-9:_.{}-]{1,100}$")
    """Prefix of the budget keys in Redis."""


ReportPeriod = Literal["daily", "weekly", "monthly"]


class ReportsSettings(_Section):
    """Scheduled usage reports sent by ``llmgw serve`` (``[reports]``; see docs/analytics.md)."""

    enabled: bool = False
    """Send the reports; with several instances exactly one sends each (a claim row in the
    database, ``report_deliveries``)."""
    at: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    """UTC time of day (HH:MM) from which the previous day's report is due."""
    periods: list[ReportPeriod] = Field(default_factory=lambda: list[ReportPeriod](["daily"]))
    """Which reports: ``daily`` (yesterday), ``weekly`` (last ISO week, sent on Mondays),
    ``monthly`` (last month, sent on the 1st)."""
    notify: list[str] = Field(default_factory=list)
    """Channels (``[notify.channels]`` names) that receive them: the webhook gets the report as
    JSON data and HTML, Slack the Markdown summary, email the HTML page."""


class RateLimitSettings(_Section):
    """Per-key request and token limits (``[ratelimit]``; see docs/ratelimits.md)."""

    backend: Literal["auto", "memory", "redis"] = "auto"
    """Where buckets live: ``auto`` uses Redis when ``redis_url`` is set, else this process's memory."""
    instances: int = Field(default=1, ge=1, le=1000)
    """Gateway instances sharing the limits; while Redis is unreachable each admits ceil(limit / instances)."""
    redis_timeout: float = Field(default=0.1, gt=0, le=5)
    """Seconds a rate-limit call to Redis may take (connect and read) before the local fallback answers."""
    retry_interval: float = Field(default=1.0, gt=0, le=60)
    """While Redis is failing, seconds between attempts to use it again (one request probes, the rest stay local)."""


def parse_cpu_list(text: str) -> set[int]:
    """A Linux CPU list (``"0"``, ``"0,2"``, ``"1-3,6"``) as a set; ``ValueError`` otherwise."""
    cpus: set[int] = set()
    for part in text.split(","):
        found = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not found or (found.group(2) and int(found.group(2)) < int(found.group(1))):
            raise ValueError(
                f'{text!r} is not "auto", "any" or a CPU list such as "0", "0,2" or "1-3"'
            )
        first = int(found.group(1))
        cpus.update(range(first, int(found.group(2) or first) + 1))
    return cpus


class BackupSettings(_Section):
    """``[backup]``: where `llmgw db backup` writes and how many it keeps, and how often
    `llmgw serve` takes a backup itself."""

    dir: Path | None = None
    """Folder for backups (default ``$LLMGW_HOME/backups``)."""
    keep: int = Field(default=7, ge=1)
    """How many of the newest backups to keep; older ones are deleted after a good backup."""
    interval: float = Field(default=0.0, ge=0, le=31_536_000)
    """Seconds between the backups `llmgw serve` takes itself, in a background thread (the first
    one an interval after start); 0 turns them off (use cron or a systemd timer instead)."""
    pace: float = Field(default=64.0, ge=0)
    """MB/s at which `llmgw serve`'s scheduled backups copy a SQLite database (small steps in one
    read snapshot, so the disk's write-back does not slow the gateway); 0 copies at full speed."""
    check: Literal["quick", "full"] = "quick"
    """How `llmgw serve` checks a scheduled SQLite backup before it counts and rotates: `quick`
    (``PRAGMA quick_check``: every page, record and constraint, one pass) or `full`
    (``integrity_check``: also every index against its table; about 14x the CPU, on the gateway's
    core). `llmgw db backup` and `db verify` always check in full."""
    method: Literal["api", "file"] = "api"
    """How `llmgw serve`'s scheduled backups copy a SQLite database in WAL mode: `api`
    (SQLite's online backup API, page by page) or `file` (the kernel copies the main file, then
    the WAL frames of the same read snapshot are applied over it: about a third of the CPU, the
    same p99 so far). Both give one consistent snapshot with every transaction committed before
    the backup began; a database not in WAL mode always goes through the API."""
    cpus: str = "auto"
    """CPUs the scheduled backup process may run on: `auto` (when the gateway is pinned to some
    of the machine's CPUs, the others; else wherever the kernel puts it), `any` (every CPU the
    machine allows, the gateway's too) or a Linux CPU list such as ``"0"`` or ``"2-3,6"``."""

    @field_validator("cpus")
    @classmethod
    def _cpu_list(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "any"):
            return value
        return ",".join(str(c) for c in sorted(parse_cpu_list(value)))


class PublishTarget(_Section):
    """One place alerts are published to (``[[alerts.targets]]``, or a Kubernetes Secret's data:
    the same keys). Credentials are secrets: never printed or logged."""

    type: Literal["pagerduty", "slack", "rootly"]
    """Which product: PagerDuty Events API v2, Slack (webhook or bot), Rootly's alerts API."""
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
    """Unique name; routing rules, the attempt records and ``llmgw alerts targets`` use it."""
    routing_key: SecretStr | None = None
    """PagerDuty: the Events API v2 integration key (32 characters)."""
    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    """PagerDuty: the Events API v2 endpoint (an emulator's in tests)."""
    webhook_url: SecretStr | None = None
    """Slack: an incoming webhook URL (the URL is the credential), or else ``bot_token``."""
    bot_token: SecretStr | None = None
    """Slack: a bot token (``xoxb-``, scope ``chat:write``) for ``chat.postMessage``; with
    ``channel``. Resolves then update the message and reply in its thread."""
    channel: str | None = None
    """Slack: the channel ID ``chat.postMessage`` posts to."""
    api_url: str = "https://slack.com/api"
    """Slack: the Web API base URL (an emulator's in tests)."""
    api_key: SecretStr | None = None
    """Rootly: an API key (a Global key for services)."""
    base_url: str = "https://api.rootly.com"
    """Rootly: the REST API base URL (an emulator's in tests)."""
    match_labels: dict[str, str] = Field(default_factory=dict)
    """Publish only alerts carrying all these label values (a JSON object in a Secret)."""
    min_severity: Literal["info", "warning", "error", "critical"] | None = None
    """Publish only alerts at least this severe (the mode's severity: the LLM's in ``enriched``)."""
    mode: Literal["transparent", "enriched", "transparent_with_recommendations"] | None = None
    """This target's processing mode; unset: ``alerts.mode``."""
    rate_per_minute: float | None = Field(default=None, gt=0)
    """Requests per minute to this target (default: Slack 60, PagerDuty 120, Rootly 3000)."""

    @field_validator("match_labels", mode="before")
    @classmethod
    def _labels_json(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                v = json.loads(v) if v.strip() else {}
            except ValueError:
                raise ValueError("match_labels must be a JSON object of strings") from None
        return v

    @model_validator(mode="after")
    def _credentials(self) -> PublishTarget:
        need = {
            "pagerduty": self.routing_key is not None,
            "rootly": self.api_key is not None,
            "slack": self.webhook_url is not None
            or (self.bot_token is not None and bool(self.channel)),
        }
        if not need[self.type]:
            hint = {
                "pagerduty": "routing_key",
                "rootly": "api_key",
                "slack": "webhook_url, or bot_token and channel",
            }
            raise ValueError(f"a {self.type} target needs {hint[self.type]}")
        return self


class PublishRoute(_Section):
    """A routing rule (``[[alerts.routes]]``): alerts it matches go to ``targets``."""

    targets: list[str] = Field(min_length=1)
    """Target names."""
    match_labels: dict[str, str] = Field(default_factory=dict)
    """All these label values must match."""
    severities: list[str] = Field(default_factory=list)
    """One of these severities (the mode's severity); empty: any."""
    categories: list[str] = Field(default_factory=list)
    """One of these classification categories; empty: any (an unclassified alert matches only
    rules without categories)."""


class KubernetesDiscoverySettings(_Section):
    """Publishing targets from Kubernetes Secrets (``[alerts.kubernetes]``; docs/alerts.md
    "Kubernetes setup"): list + watch of the labelled Secrets in ``namespaces``."""

    enabled: bool = False
    """Watch Secrets for publishing targets (needs the RBAC in deploy/kubernetes/rbac-secrets.yaml)."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty: the pod's own (from its service account), else ``default``."""
    label_selector: str = "alert-svc.io/publisher=true"
    """Which Secrets are targets (Kubernetes selector syntax: ``k=v``, ``k!=v``, ``k in (a,b)``,
    ``k notin (a,b)``, ``k``, ``!k``; a comma means AND)."""
    kubeconfig: Path | None = None
    """A kubeconfig file; unset: in-cluster config when running in a pod, else ``$KUBECONFIG``
    or ``~/.kube/config``."""
    context: str | None = None
    """The kubeconfig context to use (default: its current context)."""
    resync_seconds: float = Field(default=600.0, ge=5, le=86_400)
    """Re-list this often even when the watch is healthy (corrects anything a reconnect missed)."""
    watch_timeout_seconds: int = Field(default=300, ge=1, le=3600)
    """Server-side timeout of one watch request (it is then resumed from the last version)."""
    backoff_max_seconds: float = Field(default=30.0, ge=0.1, le=3600)
    """Longest wait before reconnecting after an error (doubling from 0.5 s, jittered)."""

    @field_validator("label_selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        from llmgw.alerts.discovery import selector_terms  # stdlib only at import

        selector_terms(v)
        return v


class AlertsSettings(_Section):
    """The alert history service (``[alerts]``; see docs/alerts.md)."""

    enabled: bool = True
    """Serve ``POST /alerts/webhook``, ``/api/alerts``, the dashboard, and run the processing worker."""
    webhook_token: SecretStr | None = None
    """Bearer token Alertmanager sends (``http_config.authorization.credentials``); unset means the
    webhook answers 404 (not configured). Not an API key: it only lets deliveries in."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Largest accepted webhook delivery; bigger gets 413 (Alertmanager sends whole groups)."""
    mode: Literal["transparent", "enriched", "transparent_with_recommendations"] = "enriched"
    """``transparent``: no LLM call, alerts as received; ``enriched``: classification attached;
    ``transparent_with_recommendations``: the original alert plus the LLM's recommendations."""
    model: str = "alerts-classifier"
    """Alias or ``provider/model`` the classifier asks through the gateway's own router."""
    prompt_version: str = "v1"
    """Part of the cache key and stored with every classification; change it with the prompt."""
    structured_output: bool = True
    """Send ``response_format: json_schema`` (OpenAI-compatible upstreams); without it the
    prompt alone asks for JSON and the answer is still validated."""
    timeout: float = Field(default=20.0, gt=0, le=600)
    """Seconds one classification call may take."""
    max_tokens: int = Field(default=800, ge=64, le=16_000)
    """Answer cap of one classification call."""
    max_attempts: int = Field(default=5, ge=1, le=100)
    """Classification attempts per occurrence before it stays unclassified (re-classify on demand)."""
    retry_backoff: float = Field(default=30.0, ge=0, le=86_400)
    """Seconds before the second attempt; doubles per attempt (at most ``retry_backoff_max``)."""
    retry_backoff_max: float = Field(default=3600.0, ge=0, le=86_400)
    """Longest wait between two attempts."""
    rpm: int | None = Field(default=120, ge=1, le=1_000_000)
    """Most LLM calls of the classifier per minute (cache hits make none), counted by the
    gateway's rate limiter (shared through Redis across instances; while Redis does not answer,
    no call is made); a refused call is retried later. Unset: no limit."""
    concurrency: int = Field(default=4, ge=1, le=256)
    """Jobs one instance's worker runs at once."""
    poll_interval: float = Field(default=2.0, gt=0, le=600)
    """Seconds between looks at the queue when idle (jobs stored by this process wake it at once)."""
    lease_seconds: float = Field(default=120.0, ge=1, le=86_400)
    """How long a claimed job belongs to one worker; a crashed worker's jobs are taken over after."""
    cache_ttl: float = Field(default=86_400.0, ge=0, le=90 * 86_400)
    """Seconds a classification is reused for the same identifying labels (Redis when
    ``redis_url`` is set, else the database); 0 disables the cache."""
    cache_prefix: str = Field(default="llmgw:alerts", pattern=r"^[A-Za-z0-9:_.{}-]{1,100}$")
    """Prefix of the classification cache's Redis keys; also names the rate limiter's bucket of
    ``alerts.rpm``, shared by the instances with the same prefix."""
    volatile_labels: list[str] = Field(
        default_factory=lambda: ["pod", "pod_template_hash", "container_id", "uid", "instance_id"]
    )
    """Labels left out of the cache key and the prompt (they change per replica, not per problem)."""
    flapping_count: int = Field(default=3, ge=2, le=1000)
    """An alert is flapping when it fired this many times within ``flapping_window``."""
    flapping_window: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    """Seconds of history the flapping rule looks at."""
    retention_firing_days: float | None = Field(default=None, gt=0)
    """Delete occurrences still firing whose last delivery is older than this (unset: keep)."""
    retention_resolved_days: float | None = Field(default=90.0, gt=0)
    """Delete resolved occurrences (with their events and jobs) this many days after resolution."""
    retention_deliveries_days: float | None = Field(default=30.0, gt=0)
    """Delete raw webhook deliveries this many days after they last arrived."""
    retention_interval: float = Field(default=3600.0, ge=1, le=86_400)
    """Seconds between retention runs."""
    retention_batch: int = Field(default=5000, ge=1, le=1_000_000)
    """Rows deleted per statement (short transactions, no long locks)."""
    alertmanager_urls: list[str] = Field(default_factory=list)
    """Alertmanager base URLs (``http://am:9093``; both of an HA pair) asked every
    ``silence_interval`` which firing alerts are silenced or inhibited (API v2); empty: never
    asked. Webhooks never carry that: Alertmanager just stops notifying."""
    silence_interval: float = Field(default=30.0, ge=1, le=3600)
    """Seconds between two questions to ``alertmanager_urls``."""
    breaker_alerts: bool = True
    """Record the gateway's own circuit breaker transitions in the history (source ``llmgw``:
    ``LlmgwCircuitOpen`` fires when a provider's circuit opens, resolves when it closes)."""
    targets: list[PublishTarget] = Field(default_factory=list)
    """Publishing targets (Slack, PagerDuty, Rootly); more come from Kubernetes Secrets."""
    routes: list[PublishRoute] = Field(default_factory=list)
    """Routing rules; none: every target gets every alert its own filters let through."""
    publish_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds one request to a target may take (a timeout is retried)."""
    publish_max_attempts: int = Field(default=8, ge=1, le=100)
    """Attempts per publication before it is left ``failed``."""
    publish_backoff: float = Field(default=2.0, ge=0, le=3600)
    """Seconds before the second attempt (jittered, doubling; ``Retry-After`` wins when longer)."""
    publish_backoff_max: float = Field(default=300.0, ge=0, le=86_400)
    """Longest wait between two attempts."""
    kubernetes: KubernetesDiscoverySettings = Field(default_factory=KubernetesDiscoverySettings)
    """Publishing targets discovered from Kubernetes Secrets."""


class AliasTarget(_Section):
    """One candidate of an alias, with an optional weight for load spreading."""

    target: str
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ModelInfo(_Section):
    """What the catalog says of one model (``[providers.model_info."MODEL"]``), over what llmgw
    knows of it (``llmgw.providers.modelinfo``); unset fields keep the known value."""

    context_window: int | None = Field(default=None, ge=1, le=100_000_000)
    """Tokens the model reads and writes in one call (conversations are fitted to it)."""
    chat: bool | None = None
    """Whether it answers chat completions."""
    embeddings: bool | None = None
    """Whether it makes embeddings."""
    streaming: bool | None = None
    """Whether it streams."""
    tools: bool | None = None
    """Whether it calls tools (functions)."""
    vision: bool | None = None
    """Whether it reads images."""


class ModelPrice(_Section):
    """Price of one model per 1M tokens (``[providers.prices."MODEL"]``); see llmgw.usage.pricing."""

    input: Decimal = Field(ge=0, max_digits=20, decimal_places=10)
    """Price per 1M prompt (input) tokens."""
    output: Decimal = Field(ge=0, max_digits=20, decimal_places=10)
    """Price per 1M completion (output) tokens."""
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    """ISO 4217 code of the price, e.g. USD or RUB; unset: the provider's currency (one per provider)."""


class ProviderConfig(_Section):
    """One upstream provider, as a ``[[providers]]`` table."""

    name: str
    """Unique name used in model names: ``local/gpt-4o-mini``."""
    kind: Literal["openai", "gigachat", "yandexgpt"]
    """Which adapter speaks to it."""
    base_url: str | None = None
    """API base URL; each kind has a public default."""
    api_key_env: str | None = None
    """Environment variable holding the credential; else the OS keyring (``providers set-secret``)."""
    models: list[str] = Field(default_factory=list)
    """Models offered; empty means ask the provider."""
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    """Most requests in flight to this provider at once; unset means 1024."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to open a connection."""
    first_byte_timeout: float = Field(default=60.0, gt=0)
    """Seconds until the response headers arrive."""
    idle_timeout: float = Field(default=30.0, gt=0)
    """Seconds between two chunks of a stream."""
    total_timeout: float = Field(default=600.0, gt=0)
    """Seconds for the whole request."""
    queue_timeout: float = Field(default=5.0, ge=0)
    """Seconds a request may wait for a free slot under ``max_concurrency`` before a 429."""
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    """ISO 4217 code the provider bills in; unset: the currency of its ``prices``, else RUB for gigachat and yandexgpt, USD for openai."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Model (provider-side name, or ``model:version``) -> price per 1M tokens; overrides the bundled price table (``llmgw providers prices``)."""
    bundled_prices: bool = True
    """Price models missing from ``prices`` by the bundled table (false: they are unpriced, e.g. a local server)."""
    model_info: dict[str, ModelInfo] = Field(default_factory=dict)
    """Model (provider-side name) -> context window and capabilities shown by ``/api/models``, over the built-in ones."""
    ca_bundle: Path | None = None
    """PEM file of extra CA certificates to trust (GigaChat: the Russian Trusted Root CA); TLS is always verified."""
    auth_url: str | None = None
    """GigaChat: the OAuth token URL (default ``https://ngw.devices.sberbank.ru:9443/api/v2/oauth``)."""
    scope: Literal["GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"] = (
        "GIGACHAT_API_PERS"
    )
    """GigaChat: the account's scope; PERS accounts get 1 concurrent request, B2B/CORP 10 (see max_concurrency)."""
    folder_id: str | None = None
    """YandexGPT: the Yandex Cloud folder ID used in ``gpt://<folder>/<model>/<version>`` (required)."""
    allowed_folders: list[str] = Field(default_factory=list)
    """YandexGPT: other folders whose ``gpt://``/``emb://`` URIs clients may name as the model; by default a client-written URI must name ``folder_id`` (else 403), since the gateway's credentials may reach other folders."""
    service_account_key_file: Path | None = None
    """YandexGPT: authorized-key JSON of a service account; when set, IAM tokens replace the API key."""
    iam_url: str | None = None
    """YandexGPT: the IAM token exchange URL (default ``https://iam.api.cloud.yandex.net/iam/v1/tokens``)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use lowercase letters, digits, '-' and '_' (at most 63)")
        return v

    @field_validator("prices")
    @classmethod
    def _check_price_currencies(
        cls, v: dict[str, ModelPrice], info: ValidationInfo
    ) -> dict[str, ModelPrice]:
        named = {p.currency for p in v.values() if p.currency is not None}
        declared = info.data.get("currency")
        if declared is not None:
            named.add(declared)
        if len(named) > 1:
            raise ValueError(
                f"one provider bills in one currency, these prices name {', '.join(sorted(named))}"
                " (costs are never converted: split the models into two providers)"
            )
        return v

    @field_validator("base_url", "auth_url", "iam_url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. https://api.example.com/v1"
            )
        return v


class Settings(BaseSettings):
    """Every llmgw setting. Build with ``load_settings``; pass it down, never read env deep inside."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    home: Path = Field(default_factory=default_home)
    """Data directory (``LLMGW_HOME``): SQLite database, spool, config."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log verbosity."""
    redis_url: SecretStr | None = None
    """Redis for shared state across instances; unset keeps state in memory."""
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    tui: TuiSettings = Field(default_factory=TuiSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    providers: list[ProviderConfig] = Field(default_factory=list)
    aliases: dict[str, list[str | AliasTarget]] = Field(default_factory=dict)
    """Alias name -> ordered candidates (``provider/model[:version]``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges the layers itself so it can tell where each value came from.
        return (init_settings,)

    @field_validator("ratelimit")
    @classmethod
    def _redis_for_redis_backend(
        cls, v: RateLimitSettings, info: ValidationInfo
    ) -> RateLimitSettings:
        if v.backend == "redis" and info.data.get("redis_url") is None:
            raise ValueError("backend 'redis' needs redis_url (or use backend 'auto' or 'memory')")
        return v

    @field_validator("providers")
    @classmethod
    def _unique_providers(cls, v: list[ProviderConfig]) -> list[ProviderConfig]:
        seen: set[str] = set()
        for p in v:
            if p.name in seen:
                raise ValueError(f"provider name {p.name!r} is used twice")
            seen.add(p.name)
        return v

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL to use, defaulting to SQLite under ``home``."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.home / 'llmgw.db'}"

    @property
    def issuer(self) -> str:
        """The tokens' ``iss`` and the OAuth endpoints' base URL (``identity.issuer`` or the
        server's own address), without a trailing slash."""
        if self.identity.issuer:
            return self.identity.issuer.rstrip("/")
        host = self.server.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port}"

    @property
    def spool_dir(self) -> Path:
        """Directory of the usage spool."""
        return self.usage.spool_dir or self.home / "spool"

    def provider(self, name: str) -> ProviderConfig | None:
        """The provider called ``name``, if configured."""
        return next((p for p in self.providers if p.name == name), None)


@dataclass
class LoadedSettings:
    """Settings plus where they came from."""

    settings: Settings
    config_file: Path | None
    sources: dict[tuple[str, ...], Source] = field(default_factory=dict)

    def source_of(self, path: tuple[str, ...]) -> Source:
        """The layer that gave the value at ``path`` (or one of its parents)."""
        for i in range(len(path), 0, -1):
            if path[:i] in self.sources:
                return self.sources[path[:i]]
        return "default"


def _leaf_paths(d: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for k, v in d.items():
        p = (*prefix, str(k))
        if isinstance(v, Mapping) and v and k not in ("aliases",):
            paths.extend(_leaf_paths(v, p))
        else:
            paths.append(p)
    return paths


def _toml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in a TOML text to its line number (1-based), for error messages."""
    lines: dict[tuple[str, ...], int] = {}
    header: tuple[str, ...] = ()
    counts: dict[tuple[str, ...], int] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s.startswith("[["):
            name = tuple(s.strip("[] ").split("."))
            counts[name] = counts.get(name, -1) + 1
            header = (*name, str(counts[name]))
            lines.setdefault(header, no)
        elif s.startswith("["):
            header = tuple(s.strip("[] ").split("."))
            lines.setdefault(header, no)
        elif "=" in s and not s.startswith("#"):
            key = s.split("=", 1)[0].strip().strip('"')
            lines.setdefault((*header, *key.split(".")), no)
    return lines


def _describe_error(
    exc: ValidationError, layers: dict[Source, dict[str, Any]], path: Path | None, text: str
) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "settings"
    msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own ValueErrors
    if err["type"] == "extra_forbidden":
        msg = "unknown setting"
    source: Source = "default"
    for candidate in ("flag", "env", "file"):
        if loc and loc[0] in layers.get(candidate, {}):
            source = candidate
            break
    where = ""
    if source == "file" and path is not None:
        key_lines = _toml_key_lines(text)
        line = next(
            (key_lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in key_lines), None
        )
        where = f"{path}:{line}: " if line else f"{path}: "
    elif source == "env":
        where = "environment: "
    elif source == "flag":
        where = "command line: "
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}{key}: {msg}{more}"


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from the four layers; raise ``ConfigError`` naming file, line and key."""
    env = os.environ if env is None else env
    path, must_exist = config_path(config_file, env)
    file_layer: dict[str, Any] = {}
    text = ""
    if path is not None and (must_exist or path.exists()):
        file_layer, text = read_toml(path)
    else:
        path = None
    home_layer: dict[str, Any] = {}
    if env.get("LLMGW_HOME"):
        home_layer["home"] = env["LLMGW_HOME"]
    layers: dict[Source, dict[str, Any]] = {
        "file": file_layer,
        "env": merge(home_layer, env_layer(env)),
        "flag": dict(overrides or {}),
    }
    merged: dict[str, Any] = {}
    sources: dict[tuple[str, ...], Source] = {}
    order: tuple[Source, ...] = ("file", "env", "flag")
    for source in order:
        merged = merge(merged, layers[source])
        for p in _leaf_paths(layers[source]):
            sources[p] = source
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(
            _describe_error(exc, layers, path, text),
            hint="run `llmgw config check` for details; `llmgw config init` writes an example",
        ) from None
    return LoadedSettings(settings=settings, config_file=path, sources=sources)
