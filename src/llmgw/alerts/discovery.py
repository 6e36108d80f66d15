"""Publishing targets from Kubernetes Secrets: list + watch of the labelled Secrets in the
configured namespaces (shared reference ``alerting.md`` §5), through ``lightkube``.

Per namespace: list (which gives a ``resourceVersion``), then watch from it; ADDED/MODIFIED/DELETED
events change the set at once and ``on_change`` is called with the whole set
(``"namespace/name"`` -> the Secret's base64-decoded data). A ``410 Gone`` (an ``ERROR`` event in
the stream or an answer) means the version is too old: re-list, then watch again. Other errors
keep the last known set and reconnect after a jittered, doubling backoff. A full re-list also runs
every ``resync_seconds``. Secret values are never logged: logs name the Secret and the error class.

A Secret without a ``name`` key gets its own name as the target's name.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from llmgw.config import KubernetesDiscoverySettings
from llmgw.tasks import stop_task

__all__ = ["SecretDiscovery", "TargetSource", "decode_secret", "parse_selector", "selector_terms"]

log = logging.getLogger("llmgw.alerts.discovery")

Targets = dict[str, dict[str, str]]
"""Target key (``namespace/name``) -> decoded Secret data."""

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class TargetSource(Protocol):
    """Something that discovers publishing targets and reports every change."""

    @property
    def targets(self) -> Targets:
        """The targets known now."""
        ...

    async def run(self) -> None:
        """Discover until cancelled, calling its ``on_change`` callback on every change."""
        ...


_SEL = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nk>[^\s!=,()]+)"
    r"|(?P<k>[^\s!=,()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<v>[^\s,()!=]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<vals>[^)]*)\))?)\s*$"
)


def _split(selector: str) -> list[str]:
    """Split on the commas that are not inside ``( )``."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def selector_terms(selector: str) -> list[tuple[str, str, list[str]]]:
    """The terms of a label selector as (key, operator, values); ``ValueError`` if invalid.
    Operators: ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!``."""
    out: list[tuple[str, str, list[str]]] = []
    for part in _split(selector):
        m = _SEL.match(part)
        if m is None:
            raise ValueError(f"invalid label selector term {part.strip()!r}")
        if m["nk"]:
            out.append((m["nk"], "!", []))
        elif m["op"]:
            out.append((m["k"], "!=" if m["op"] == "!=" else "=", [m["v"]]))
        elif m["set"]:
            out.append((m["k"], m["set"], [v.strip() for v in m["vals"].split(",") if v.strip()]))
        else:
            out.append((m["k"], "exists", []))
    if not out:
        raise ValueError("the label selector is empty")
    return out


def parse_selector(selector: str) -> dict[str, Any]:
    """A Kubernetes label selector string as ``lightkube`` operators (``ValueError`` if invalid)."""
    from lightkube import operators as op

    out: dict[str, Any] = {}
    for key, kind, vals in selector_terms(selector):
        if kind == "=":
            out[key] = op.equal(vals[0])
        elif kind == "!=":
            out[key] = op.not_equal(vals[0])
        elif kind == "in":
            out[key] = op.in_(vals)
        elif kind == "notin":
            out[key] = op.not_in(vals)
        elif kind == "exists":
            out[key] = op.exists()
        else:
            out[key] = op.not_exists()
    return out


def decode_secret(name: str, data: Mapping[str, str] | None) -> dict[str, str] | None:
    """A Secret's ``data`` (base64 values) decoded to text, ``name`` defaulting to the Secret's;
    ``None`` when a value is not base64 of UTF-8 text (the message never carries the value)."""
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
    out.setdefault("name", name)
    return out


class SecretDiscovery:
    """Targets from labelled Secrets in ``settings.namespaces`` (see the module docstring)."""

    def __init__(
        self,
        settings: KubernetesDiscoverySettings,
        on_change: Callable[[Targets], Any],
        *,
        client: Any = None,
        service_account: Path = SERVICE_ACCOUNT,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.selector = parse_selector(settings.label_selector)
        self._client = client
        self._service_account = service_account
        self._by_ns: dict[str, Targets] = {}
        self._task: asyncio.Task[None] | None = None
        self.lists = 0
        """Lists done (the first one per namespace, re-lists after a 410 or a resync)."""
        self.errors = 0
        """Errors that led to a reconnect (not counting 410s)."""
        self.synced = asyncio.Event()
        """Set once every namespace has been listed."""

    # -- set up --------------------------------------------------------------------------------
    def _config(self) -> Any:
        from lightkube import KubeConfig

        s = self.settings
        if s.kubeconfig is not None:
            return KubeConfig.from_file(s.kubeconfig)
        return KubeConfig.from_env(service_account=self._service_account)

    def client(self) -> Any:
        """The ``lightkube.AsyncClient`` (built on first use from the settings)."""
        if self._client is None:
            import httpx2
            from lightkube import AsyncClient

            config = self._config()
            if self.settings.context is not None:
                config = config.get(context_name=self.settings.context)
            # A read may wait a whole watch; connecting must not.
            timeout = httpx2.Timeout(10.0, read=self.settings.watch_timeout_seconds + 30.0)
            self._client = AsyncClient(config, timeout=timeout)
        return self._client

    def namespaces(self) -> list[str]:
        """The namespaces watched: configured, else the pod's own, else ``default``."""
        if self.settings.namespaces:
            return list(dict.fromkeys(self.settings.namespaces))
        with contextlib.suppress(OSError):
            own = (self._service_account / "namespace").read_text().strip()
            if own:
                return [own]
        return ["default"]

    @property
    def targets(self) -> Targets:
        """Every target known now, over all namespaces."""
        out: Targets = {}
        for group in self._by_ns.values():
            out.update(group)
        return out

    # -- running -------------------------------------------------------------------------------
    def start(self) -> None:
        """Run in a background task of the current event loop."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="secret-discovery")

    async def aclose(self) -> None:
        """Stop the task and close the client."""
        if self._task is not None:
            await stop_task(self._task, 10.0, "Kubernetes discovery")
            self._task = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    async def run(self) -> None:
        """Watch every namespace until cancelled."""
        namespaces = self.namespaces()
        pending = set(namespaces)

        def listed(ns: str) -> None:
            pending.discard(ns)
            if not pending:
                self.synced.set()

        log.info("watching Secrets %r in namespaces %s", self.settings.label_selector, namespaces)
        async with asyncio.TaskGroup() as group:
            for ns in namespaces:
                group.create_task(self._namespace(ns, listed))

    def _emit(self) -> None:
        try:
            self.on_change(self.targets)
        except Exception:  # a faulty consumer must not stop discovery
            log.exception("publishing targets: applying discovered targets failed")

    def _entry(self, ns: str, obj: Any) -> tuple[str, dict[str, str] | None]:
        name = obj.metadata.name
        decoded = decode_secret(name, obj.data)
        if decoded is None:
            log.warning("Secret %s/%s: a data value is not base64 of UTF-8 text; ignored", ns, name)
        return f"{ns}/{name}", decoded

    async def _list(self, ns: str) -> str:
        from lightkube.resources.core_v1 import Secret

        result = self.client().list(Secret, namespace=ns, labels=self.selector)
        found: Targets = {}
        async for obj in result:
            key, data = self._entry(ns, obj)
            if data is not None:
                found[key] = data
        rv: str = result.resourceVersion
        self.lists += 1
        changed = found != self._by_ns.get(ns)
        self._by_ns[ns] = found
        log.info("Secrets in %s: %d publishing target(s) at version %s", ns, len(found), rv)
        if changed or self.lists == 1:
            self._emit()
        return rv

    async def _watch(self, ns: str, rv: str) -> None:
        from lightkube.resources.core_v1 import Secret

        watch = self.client().watch(
            Secret, namespace=ns, labels=self.selector, resource_version=rv,
            server_timeout=self.settings.watch_timeout_seconds,
        )  # fmt: skip
        async for kind, obj in watch:
            if kind == "BOOKMARK":
                continue
            key, data = self._entry(ns, obj)
            current = self._by_ns.setdefault(ns, {})
            if kind == "DELETED" or data is None:
                if current.pop(key, None) is None:
                    continue
                log.info("publishing target Secret %s removed", key)
            else:
                if current.get(key) == data:
                    continue
                log.info(
                    "publishing target Secret %s %s", key, "changed" if key in current else "added"
                )
                current[key] = data
            self._emit()

    async def _namespace(self, ns: str, listed: Callable[[str], None]) -> None:
        from lightkube import ApiError

        backoff = 0.5
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list(ns)
                    listed(ns)
                    resync_at = time.monotonic() + self.settings.resync_seconds
                async with asyncio.timeout_at(_loop_time(resync_at)):
                    await self._watch(ns, rv)
                backoff = 0.5
            except TimeoutError:
                rv = None  # periodic re-list
            except ApiError as exc:
                code = exc.status.code
                if code == 410:
                    log.info("watch of Secrets in %s: version too old (410); re-listing", ns)
                    rv = None
                    continue
                await self._backoff(ns, f"API error {code} {exc.status.reason}", backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_seconds)
                rv = None if code in (401, 403, 404) else rv
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network, TLS, bad config: retry, never crash the server
                await self._backoff(ns, type(exc).__name__, backoff)
                backoff = min(backoff * 2, self.settings.backoff_max_seconds)

    async def _backoff(self, ns: str, why: str, delay: float) -> None:
        self.errors += 1
        wait = min(delay, self.settings.backoff_max_seconds) * random.uniform(0.8, 1.2)  # noqa: S311
        log.warning("watching Secrets in %s failed (%s); retrying in %.1f s", ns, why, wait)
        await asyncio.sleep(wait)


def _loop_time(monotonic_deadline: float) -> float:
    """A ``time.monotonic()`` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
