"""Why a listening socket could not be opened, said so that the hint points at the real cause."""

from __future__ import annotations

import errno
import socket

from llmgw.errors import UsageError

__all__ = ["listen_error"]


def listen_error(host: str, port: int, exc: OSError) -> UsageError:
    """A ``UsageError`` (exit 2) for a failed bind of ``host:port``, blaming the host or the port."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"cannot listen on {host}:{port}: {reason}"
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        hint = (
            f"--host {host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 "
            "or one of its interfaces' addresses"
        )
    elif exc.errno == errno.EADDRINUSE:
        hint = f"another process uses port {port}; choose another with --port (0 picks a free one)"
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges; choose --port 1024 or higher"
    else:
        hint = "check --host and --port"
    return UsageError(message, hint=hint)
