"""Run an ASGI app on uvicorn: in a background thread (tests, benchmarks) or in the foreground (CLI)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["RunningServer", "serve_forever", "serve_in_thread"]


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _config(app: Any, host: str, port: int, **kw: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # never reconfigure the host process's logging
        log_level="warning",
        access_log=False,  # emulators are benchmark upstreams: no per-request logging
        lifespan="auto",
        timeout_graceful_shutdown=1,
        **kw,
    )


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class RunningServer:
    """A uvicorn server running ``app`` in a daemon thread; stop it with ``stop()`` or ``with``."""

    def __init__(self, app: Any, host: str, sock: socket.socket) -> None:
        self.app = app
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.url = _url(host, self.port)
        """``http://HOST:PORT`` without a trailing slash."""
        self._sock = sock
        self._server = uvicorn.Server(_config(app, host, self.port))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def start(self, timeout: float = 10.0) -> RunningServer:
        """Start the thread and wait until the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout}s")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: idle connections close at once, running requests get about a second to finish.

        Requests still running after that are cancelled and the app's lifespan shutdown runs;
        if the thread is still alive after ``timeout`` seconds, uvicorn is told to force-exit.
        """
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningServer {self.url}>"


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve ``app`` on ``host:port`` (0: a free port) in a background thread, ready on return."""
    return RunningServer(app, host, _bind(host, port)).start()


def serve_forever(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM (SIGTERM returns; Ctrl-C raises
    ``KeyboardInterrupt`` once the server has stopped).

    ``on_ready(url, port)`` is called once the socket is bound (before requests are served),
    so a CLI can print the URLs to configure even when ``port`` was 0.
    """
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    server = _ForegroundServer(_config(app, host, bound))
    # A signal between the banner and uvicorn's own handlers stops the server the same way.
    early = {s: signal.signal(s, server.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready(_url(host, bound), bound)
        server.run(sockets=[sock])
    finally:
        for s, handler in early.items():
            signal.signal(s, handler)
        sock.close()
    if server.interrupted:
        raise KeyboardInterrupt  # the CLI prints one "interrupted" line and exits 130


class _ForegroundServer(uvicorn.Server):
    """Stops on SIGINT or SIGTERM without re-raising the signal: SIGTERM is a normal stop (the
    process exits 0) and a Ctrl-C is reported by ``serve_forever`` as ``KeyboardInterrupt``."""

    interrupted = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Remember a Ctrl-C, then let uvicorn shut down."""
        self.interrupted = self.interrupted or sig == signal.SIGINT
        super().handle_exit(sig, frame)
        self._captured_signals = []
