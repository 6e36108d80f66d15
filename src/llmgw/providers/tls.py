"""The one TLS client context of llmgw: the server's upstream calls, token endpoints and the CLI.

``llmgw serve`` (``Transport``, GigaChat OAuth, Yandex IAM) and ``llmgw providers test`` build their
context here, so a provider's ``ca_bundle`` means the same thing to both: the system's CAs plus the
bundle's, with verification always on.
"""

from __future__ import annotations

import functools
import os
import ssl

from llmgw.errors import ConfigError

__all__ = ["default_ssl_context", "ssl_context"]


def ssl_context(ca_bundle: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context: the system's CAs plus ``ca_bundle`` (PEM) when given.

    Verification is never switched off; a missing or unreadable bundle is a ``ConfigError``
    naming the file (never its contents).
    """
    ctx = ssl.create_default_context()
    if ca_bundle is not None:
        path = os.fspath(ca_bundle)
        try:
            ctx.load_verify_locations(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(
                f"cannot load the CA bundle {path}: {reason}",
                hint="ca_bundle must be a readable PEM file of CA certificates",
            ) from None
    return ctx


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The context for https upstreams without a CA bundle (system CAs), made once per process."""
    return ssl_context()
