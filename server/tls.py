"""HTTPS in ``llmgw serve``: the TLS context, reloading the certificate on SIGHUP, the HSTS header.

The context accepts TLS 1.2 and 1.3 only; for TLS 1.2 only forward-secret AEAD suites (ECDHE with
AES-GCM or ChaCha20-Poly1305, Mozilla's "intermediate" profile); TLS 1.3 keeps OpenSSL's suites
(all AEAD). No compression, no renegotiation, ALPN ``http/1.1``. docs/deployment.md#tls
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from llmgw.config import ServerSettings
from llmgw.errors import ConfigError

__all__ = [
    "TLS12_CIPHERS",
    "CertificateReloader",
    "TLSCollector",
    "not_after",
    "HSTSMiddleware",
    "server_context",
    "tls_context",
]

log = logging.getLogger("llmgw.server")

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"


def server_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    """A server-side TLS context holding ``certfile``'s chain and ``keyfile``'s key (or the cert file's)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def not_after(certfile: Path) -> float:
    """When the first (leaf) certificate in ``certfile`` expires, as a Unix time; NaN if unreadable."""
    from cryptography import x509

    try:
        match = _PEM_CERT.search(certfile.read_bytes())
        if match is None:
            return float("nan")
        return x509.load_pem_x509_certificate(match.group(0)).not_valid_after_utc.timestamp()
    except (OSError, ValueError):
        return float("nan")


def tls_context(server: ServerSettings) -> ssl.SSLContext | None:
    """The context for ``[server] ssl_certfile/ssl_keyfile``, or None without a certificate.

    A certificate or key that cannot be read or does not match is a ``ConfigError`` (one line,
    exit 2) here, before the port is bound, not a traceback once serving.
    """
    if server.ssl_certfile is None:
        return None
    try:
        return server_context(server.ssl_certfile, server.ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        files = str(server.ssl_certfile)
        if server.ssl_keyfile is not None:
            files += f" and {server.ssl_keyfile}"
        raise ConfigError(
            f"server.ssl_certfile: cannot load {files}: {_reason(exc)}",
            hint="give a PEM certificate chain and its unencrypted PEM private key",
        ) from None


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


class CertificateReloader:
    """Loads the certificate and key files again into the live context (SIGHUP).

    The new files are loaded into a scratch context first: if they cannot be read or do not
    match, the error is logged and the running certificate stays. Connections made after a
    reload get the new certificate; open ones keep theirs.
    """

    def __init__(self, ctx: ssl.SSLContext, certfile: Path, keyfile: Path | None) -> None:
        self.ctx = ctx
        self.certfile = certfile
        self.keyfile = keyfile
        self.reloads = 0
        self.failures = 0
        self.expires = not_after(certfile)
        """Expiry (Unix time) of the certificate being served."""

    def reload(self) -> bool:
        """Swap in the files' current certificate; False (and the old one kept) if they are bad."""
        try:
            server_context(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            self.failures += 1
            log.error(
                "TLS certificate reload failed, keeping the current one: %s: %s",
                self.certfile,
                _reason(exc),
            )
            return False
        self.ctx.load_cert_chain(self.certfile, self.keyfile)
        self.reloads += 1
        self.expires = not_after(self.certfile)
        log.info("TLS certificate reloaded from %s", self.certfile)
        return True


class TLSCollector:
    """``/metrics``: the served certificate's expiry and the SIGHUP reloads by result."""

    def __init__(self, reloader: CertificateReloader) -> None:
        self._reloader = reloader

    def collect(self) -> Iterable[Any]:
        """Read at scrape time."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        r = self._reloader
        yield GaugeMetricFamily(
            "llmgw_tls_certificate_expiry_timestamp_seconds",
            "When the TLS certificate llmgw serves expires (Unix time).",
            value=r.expires,
        )
        reloads = CounterMetricFamily(
            "llmgw_tls_reloads", "TLS certificate reloads (SIGHUP) by result.", labels=["result"]
        )
        reloads.add_metric(["ok"], r.reloads)
        reloads.add_metric(["failed"], r.failures)
        yield reloads


_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


class HSTSMiddleware:
    """Adds ``Strict-Transport-Security: max-age=N`` to every HTTP response (only used with TLS)."""

    def __init__(self, app: Any, max_age: int) -> None:
        self.app = app
        self.header = (b"strict-transport-security", f"max-age={max_age}".encode())

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """Pass the request on; add the header to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: _Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)
