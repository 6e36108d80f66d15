"""An emulated Kubernetes API server for Secrets, speaking the real list/watch wire format
(shared reference ``alerting.md`` §5.5): ``GET /api/v1/namespaces/{ns}/secrets`` answers a
``SecretList`` with ``metadata.resourceVersion`` (items without kind/apiVersion, ``data`` base64),
and with ``watch=true`` a chunked stream of newline-delimited ``{"type", "object"}`` events from
the given ``resourceVersion`` until ``timeoutSeconds``. Label selectors are applied on the server
(an object leaving the selector is sent as ``DELETED``, one entering as ``ADDED``, as the watch
cache does). A version older than the compaction point answers a ``410`` ``ERROR`` event
(``reason: Expired``); ``expire()`` also sends it to every open watch, mid-stream.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (``k=v``, ``k==v``, ``k!=v``, ``k in (..)``,
    ``k notin (..)``, ``k``, ``!k``; comma = AND)."""
    terms = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s*\(([^)]*)\)", term):
            vals = {v.strip() for v in m[3].split(",")}
            has = m[1] in labels and labels[m[1]] in vals
            if (m[2] == "in") != has:
                return False
        elif m := re.fullmatch(r"([^!=\s]+)\s*!=\s*(\S*)", term):
            if labels.get(m[1]) == m[2]:
                return False
        elif m := re.fullmatch(r"([^!=\s]+)\s*==?\s*(\S*)", term):
            if labels.get(m[1]) != m[2]:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class KubeApi:
    """The store and its event history; tests change Secrets through it from any thread."""

    token: str | None = "test-token"
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    rv: int = 100
    compacted: int = 0
    """Events at or below this version are gone: watching from an older version answers 410."""
    list_calls: int = 0
    watch_calls: int = 0
    requests: list[str] = field(default_factory=list)
    """Method and path with query of every request, in order."""
    _expire_generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(
        self, ns: str, name: str, data: Mapping[str, str], labels: Mapping[str, str] | None = None,
        *, event: bool = True,
    ) -> None:  # fmt: skip
        """Create or replace a Secret (``data`` in clear; stored base64, as the API does)."""
        with self.lock:
            old = self.objects.get((ns, name))
            rv = str(self._bump())
            obj = {
                "kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "uid": (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()),
                             "resourceVersion": rv, "creationTimestamp": "2026-12-03T15:00:00Z",
                             "labels": dict(labels or {})},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
                "type": "Opaque",
            }  # fmt: skip
            self.objects[(ns, name)] = obj
            if event:
                self.events.append((int(rv), "MODIFIED" if old else "ADDED", copy.deepcopy(obj)))
            else:
                self.compacted = int(rv)

    def delete(self, ns: str, name: str) -> None:
        """Delete a Secret."""
        with self.lock:
            obj = self.objects.pop((ns, name))
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._bump())
            self.events.append((self.rv, "DELETED", obj))

    def expire(self) -> None:
        """Compact the history past every open watch: each gets a 410 ERROR event now."""
        with self.lock:
            self.compacted = self._bump()
            self._expire_generation += 1

    # -- HTTP ----------------------------------------------------------------------------------
    async def secrets(self, request: Request) -> Response:
        self.requests.append(f"GET {request.url.path}?{request.url.query}")
        if (
            self.token is not None
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return JSONResponse(_status(401, "Unauthorized", "Unauthorized"), 401)
        ns = request.path_params["ns"]
        q = request.query_params
        selector = q.get("labelSelector", "")
        if q.get("watch") in ("true", "1"):
            return await self._watch(ns, selector, q)
        self.list_calls += 1
        with self.lock:
            items = [copy.deepcopy(o) for (n, _), o in sorted(self.objects.items())
                     if n == ns and matches(selector, o["metadata"]["labels"])]  # fmt: skip
            rv = str(self.rv)
        for item in items:  # list items carry no kind/apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return JSONResponse({"kind": "SecretList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": rv}, "items": items})  # fmt: skip

    async def _watch(self, ns: str, selector: str, q: Mapping[str, str]) -> Response:
        self.watch_calls += 1
        try:
            since = int(q.get("resourceVersion") or self.rv)
        except ValueError:
            return JSONResponse(_status(400, "BadRequest", "invalid resourceVersion"), 400)
        timeout = float(q.get("timeoutSeconds") or 1800)
        return StreamingResponse(
            self._stream(ns, selector, since, timeout), media_type="application/json"
        )

    async def _stream(
        self, ns: str, selector: str, since: int, duration: float
    ) -> AsyncIterator[bytes]:
        deadline = time.monotonic() + duration
        generation = self._expire_generation
        pos = since
        while time.monotonic() < deadline:
            with self.lock:
                expired = pos < self.compacted or generation != self._expire_generation
                fresh = [
                    e for e in self.events if e[0] > pos and e[2]["metadata"]["namespace"] == ns
                ]
                current_rv = self.rv
            if expired:
                msg = f"too old resource version: {pos} ({self.compacted})"
                yield _line({"type": "ERROR", "object": _status(410, "Expired", msg)})
                return
            for rv, kind, obj in fresh:
                pos = rv
                out = _filtered(kind, obj, selector, self._previous_labels(obj, rv))
                if out is not None:
                    yield _line(out)
            pos = max(pos, current_rv) if not fresh else pos
            await asyncio.sleep(0.01)

    def _previous_labels(self, obj: dict[str, Any], rv: int) -> dict[str, str] | None:
        """The labels the same Secret had at its previous event (None: it did not exist)."""
        with self.lock:
            for erv, kind, prev in reversed(self.events):
                if erv < rv and prev["metadata"]["uid"] == obj["metadata"]["uid"]:
                    return None if kind == "DELETED" else prev["metadata"]["labels"]
        return None


def _filtered(
    kind: str, obj: dict[str, Any], selector: str, before: dict[str, str] | None
) -> dict[str, Any] | None:
    now_in = matches(selector, obj["metadata"]["labels"])
    was_in = before is not None and matches(selector, before)
    if kind == "DELETED":
        return {"type": "DELETED", "object": obj} if now_in else None
    if now_in and not was_in:
        return {"type": "ADDED", "object": obj}
    if was_in and not now_in:
        return {"type": "DELETED", "object": obj}
    return {"type": kind, "object": obj} if now_in else None


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def create_app(api: KubeApi | None = None) -> Starlette:
    """The emulated API server; ``app.state.api`` is its ``KubeApi``."""
    api = api or KubeApi()
    app = Starlette(routes=[Route("/api/v1/namespaces/{ns}/secrets", api.secrets, methods=["GET"])])
    app.state.api = api
    return app
