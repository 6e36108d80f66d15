"""Running the app on uvicorn (uvloop + httptools) with a graceful, bounded drain on SIGTERM.

On SIGTERM (or the first Ctrl-C) ``GatewayServer`` flips the app's ``Drain`` at once, so
``/readyz`` answers 503, then lets uvicorn stop accepting and wait for in-flight work. Streams still
open at ``drain_seconds`` get a final SSE error event and close; uvicorn's own graceful timeout is
a little longer (``_GRACE``) so those final events go out before it cancels what is left. Then the
lifespan flushes usage and the process exits 0 (uvicorn would re-raise SIGTERM and die by signal).

The HTTP protocol is httptools with request-receipt deadlines (``llmgw.server.receipt``): slow
headers or bodies get 408 after ``server.request_receipt_timeout``, and heads over
``server.max_header_bytes`` or ``server.max_headers`` get 431.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import socket
import ssl
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from llmgw.config import Settings, load_settings
from llmgw.errors import ConfigError, Unavailable
from llmgw.listen import listen_error
from llmgw.server.app import GatewayApp, create_app, gateway_of
from llmgw.server.receipt import ReceiptStats, receipt_protocol
from llmgw.server.streaming import Drain
from llmgw.server.tls import CertificateReloader, HSTSMiddleware, TLSCollector, tls_context

__all__ = ["GC_THRESHOLD", "GatewayServer", "log_config", "run", "tune_gc"]

_GRACE = 2.0
# Young-generation threshold of the cyclic GC while serving. With many requests in flight,
# thousands of live request objects keep crossing the default 700 allocations, so collections
# ran every few requests and cost about a third of the CPU per request (docs/performance.md).
# Reference counting frees request garbage by itself; RSS stays flat with this setting.
GC_THRESHOLD = (10_000, 20, 20)


def tune_gc() -> None:
    """Raise the cyclic GC's thresholds for serving (``GatewayServer.startup`` freezes the start-up heap)."""
    gc.set_threshold(*GC_THRESHOLD)


def _find_drain(app: Any) -> Drain | None:
    for _ in range(16):  # uvicorn wraps the app in a few middlewares
        if app is None:
            return None
        state = getattr(app, "state", None)
        drain = getattr(state, "drain", None) if state is not None else None
        if isinstance(drain, Drain):
            return drain
        app = getattr(app, "app", None)
    return None


class GatewayServer(uvicorn.Server):
    """A uvicorn server that starts the app's drain on the first SIGTERM/SIGINT and exits 0."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain_seconds: float,
        reloader: CertificateReloader | None = None,
    ) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.reloader = reloader
        """With HTTPS: SIGHUP loads the certificate and key files again."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.interrupted = False
        """Whether the stop was a Ctrl-C (SIGINT): the CLI then exits 130, after the same drain."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the loop (the signal handler schedules the drain timer on it), then serve."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, let open keep-alive connections end cleanly, then uvicorn's shutdown.

        uvicorn closes idle keep-alive connections at once; a proxy that has just picked one of
        them for a request then reads a reset and, for a POST, answers 502 (it may not retry a
        request that was sent). Instead every response from now on carries ``Connection: close``
        and idle connections get up to ``timeout_keep_alive`` (the idle time a client must already
        expect) to carry one last request or be closed by the client; new connections are refused,
        which a proxy retries on another instance. docs/deployment.md#rolling-restart
        """
        protocol = self.config.http_protocol_class
        if isinstance(protocol, type) and hasattr(protocol, "closing"):
            protocol.closing = True
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for conn in list(self.server_state.connections):
            cycle = getattr(conn, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(float(self.config.timeout_keep_alive), self.drain_seconds)
        # uvicorn's connection set has no event to wait on; its own shutdown polls it too.
        while self.server_state.connections and loop.time() < deadline and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start (the app's lifespan first), then freeze the start-up heap.

        Everything built so far (modules, settings, pools) moves out of the cyclic GC's reach:
        full collections then scan only what requests allocate, which keeps their pauses short.
        Done here, not in the app factory or its lifespan, so an app run by tests or another
        server leaves its host process's collector alone.
        """
        await super().startup(sockets)
        if self.reloader is not None:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                # only in the main thread of a process, as under ``llmgw serve``
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reloader.reload)
        gc.collect()
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Begin the drain, then let uvicorn shut down; a second Ctrl-C forces the exit."""
        self.interrupted = self.interrupted or sig == signal.SIGINT
        drain = _find_drain(self.config.loaded_app)
        if drain is not None and not drain.draining and self._loop is not None:
            drain.begin_threadsafe(self._loop, self.drain_seconds)
        super().handle_exit(sig, frame)
        # A drained shutdown is a normal exit (0): do not re-raise the signal afterwards.
        self._captured_signals = [
            s for s in self._captured_signals if s not in (signal.SIGTERM, signal.SIGINT)
        ]


def _log_secrets(settings: Settings) -> list[str]:
    """The running settings' secrets, for the log filter: provider keys, URLs, tokens."""
    found = [
        secret.get_secret_value()
        for secret in (settings.database.url, settings.redis_url, settings.server.metrics_token)
        if secret is not None
    ]
    for provider in settings.providers:
        env = getattr(provider, "api_key_env", None)
        if env and os.environ.get(env):
            found.append(os.environ[env])
    return found


def log_config(settings: Settings) -> dict[str, Any]:
    """Logging: JSON access lines on stdout, other messages on stderr (as text), by default.

    ``[log] format = "json"``: messages are JSON lines on stdout too. ``[log] file``: everything
    goes to that file, rotated by size. Every message passes the secret filter first.
    """
    level = settings.log_level.upper()
    log = settings.log
    messages_formatter = "json" if log.format == "json" else "text"
    access: dict[str, Any]
    messages: dict[str, Any]
    if log.file is not None:
        target = {"path": str(log.file), "max_bytes": log.max_bytes, "backups": log.backups}
        access = {"()": "llmgw.server.logs.file_handler", "batched": True, **target}
        messages = {"()": "llmgw.server.logs.file_handler", **target}
    else:
        access = {"class": "llmgw.server.logs.BatchedStreamHandler", "stream": "ext://sys.stdout"}
        stream = "ext://sys.stdout" if log.format == "json" else "ext://sys.stderr"
        messages = {"class": "logging.StreamHandler", "stream": stream}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "secrets": {"()": "llmgw.server.logs.SecretFilter", "secrets": _log_secrets(settings)}
        },
        "formatters": {
            "plain": {"format": "%(message)s"},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "llmgw.server.logs.JsonFormatter"},
        },
        "handlers": {
            "access": {**access, "formatter": "plain"},
            "messages": {**messages, "formatter": messages_formatter, "filters": ["secrets"]},
        },
        "loggers": {
            "llmgw.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "llmgw": {"handlers": ["messages"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["messages"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def _receipt_stats(app: Any) -> ReceiptStats | None:
    return gateway_of(app).metrics.receipt if isinstance(app, GatewayApp) else None


def _uvicorn_config(
    app: Any, settings: Settings, ctx: ssl.SSLContext | None = None, **kw: Any
) -> uvicorn.Config:
    s = settings.server
    stats = _receipt_stats(app)
    if ctx is not None:
        # uvicorn builds its context with any protocol and cipher; ours is TLS 1.2+ (server/tls.py)
        kw["ssl_context_factory"] = lambda _config, _default: ctx
        kw["ssl_certfile"] = s.ssl_certfile  # uvicorn's is_ssl, the https:// it logs
        if s.hsts_seconds:
            app = HSTSMiddleware(app, s.hsts_seconds)
    return uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        loop="uvloop",
        # httptools + receipt deadlines and header limits, counted in the app's metrics
        http=receipt_protocol(
            s.request_receipt_timeout,
            stats,
            max_header_bytes=s.max_header_bytes,
            max_headers=s.max_headers,
        ),
        lifespan="on",
        access_log=False,  # one JSON line per request comes from our middleware
        log_config=log_config(settings),
        timeout_graceful_shutdown=int(s.drain_seconds + _GRACE + 0.999),
        server_header=False,
        proxy_headers=False,
        **kw,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; a clear ``UsageError`` (exit 2) when that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise listen_error(host, port, exc) from None
    sock.set_inheritable(True)
    return sock


def _server(settings: Settings) -> GatewayServer:
    """The app on a ``GatewayServer``, with HTTPS (and its SIGHUP reload) when a certificate is set."""
    s = settings.server
    ctx = tls_context(s)
    app = create_app(settings)
    config = _uvicorn_config(app, settings, ctx)
    reloader = None
    if ctx is not None and s.ssl_certfile is not None:
        reloader = CertificateReloader(ctx, s.ssl_certfile, s.ssl_keyfile)
        gateway_of(app).metrics.registry.register(TLSCollector(reloader))
    return GatewayServer(config, drain_seconds=s.drain_seconds, reloader=reloader)


def _worker(config_file: str | None, overrides: dict[str, Any], sock: socket.socket) -> None:
    """One worker process: rebuild the settings, serve on the inherited socket, drain on SIGTERM."""
    settings = load_settings(Path(config_file) if config_file else None, overrides).settings
    server = _server(settings)
    tune_gc()
    server.run(sockets=[sock])


def _supervise(settings: Settings, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Bind once, start ``workers`` processes on the socket, forward SIGTERM/SIGINT, wait for all."""
    ctx = multiprocessing.get_context("spawn")
    _uvicorn_config(None, settings)  # configures logging in this process too
    tls_context(settings.server)  # a bad certificate stops here, once, not in every worker
    sock = bind(settings.server.host, settings.server.port)
    procs = [
        ctx.Process(
            target=_worker,
            args=(str(config_file) if config_file else None, overrides, sock),
            name=f"llmgw-worker-{i}",
        )
        for i in range(settings.server.workers)
    ]
    stopping: list[int] = []

    def forward(sig: int, frame: FrameType | None) -> None:
        stopping.append(sig)
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGTERM)

    def reload(sig: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.pid is not None and p.exitcode is None:
                os.kill(p.pid, signal.SIGHUP)

    # The handler goes in before anything is announced or started: a stop that comes while the
    # workers start must be forwarded, not kill this process by the default action (-15).
    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    if settings.server.ssl_certfile is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    try:
        _announce(settings, sock)
        for p in procs:
            if stopping:  # stopped before every worker started: start no more
                break
            p.start()
        if stopping:  # a stop that came while one was starting reaches it too
            forward(stopping[0], None)
        for p in procs:
            if p.pid is not None:
                p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
    # A worker still starting when the stop came (importing, before its server installed the
    # drain handler) dies by the forwarded signal itself: it held no request, so that is a clean
    # stop too, not a failed worker (exit 9). Under load a second worker often starts last.
    asked = {-s for s in stopping}
    failed = [
        p.exitcode
        for p in procs
        if p.pid is not None and p.exitcode != 0 and p.exitcode not in asked
    ]
    if failed:
        raise Unavailable(f"{len(failed)} worker(s) exited abnormally (exit codes {failed})")


def _announce(settings: Settings, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.server.ssl_certfile is not None else "http"
    sys.stderr.write(
        f"llmgw: serving on {scheme}://{shown}:{port} ({len(settings.providers)} provider(s), "
        f"{settings.server.workers} worker(s), drain {settings.server.drain_seconds:g}s)\n"
    )
    sys.stderr.flush()


def run(settings: Settings, *, config_file: Path | None, overrides: dict[str, Any]) -> None:
    """Serve until SIGTERM/SIGINT; returns after a graceful drain (every worker's, with ``workers``).

    With one worker, a Ctrl-C (SIGINT) ends the same drain in ``KeyboardInterrupt``, which the CLI
    reports as one ``interrupted`` line and exit 130; SIGTERM is a normal stop (exit 0).
    """
    if settings.log.file is not None and settings.server.workers > 1:
        raise ConfigError(
            "log.file works with one worker: several processes cannot rotate one file",
            hint="log to stdout (log.format = json) and collect it, or run one worker per instance",
        )
    if settings.server.workers > 1:
        _supervise(settings, config_file, overrides)
        return
    tls_context(settings.server)  # a bad certificate: one line and exit 2, before binding
    sock = bind(settings.server.host, settings.server.port)
    _announce(settings, sock)
    try:
        server = _server(settings)
        tune_gc()
        server.run(sockets=[sock])
        if server.interrupted:  # after the same drain: one "interrupted" line, exit 130
            raise KeyboardInterrupt
    finally:
        sock.close()
