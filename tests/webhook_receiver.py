"""A local HTTP receiver for notification tests: records every POST's path, headers and JSON body.

``with WebhookReceiver() as hook:`` serves on a free 127.0.0.1 port in a thread; ``hook.url``
is its base URL; ``hook.statuses`` (a list) scripts the answers of the next POSTs (then 200).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """Records POSTs: ``received`` is a list of ``(path, headers, body)``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                with owner._lock:
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    if status < 300:
                        owner.received.append(
                            (self.path, dict(self.headers.items()), json.loads(raw or b"null"))
                        )
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def bodies(self, path: str | None = None) -> list[Any]:
        """The JSON bodies received (on ``path`` only, when given)."""
        with self._lock:
            return [b for p, _, b in self.received if path is None or p == path]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
