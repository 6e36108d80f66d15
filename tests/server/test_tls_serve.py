"""``llmgw serve`` answering HTTPS itself: ``[server] ssl_certfile/ssl_keyfile``, TLS 1.2+, HSTS,
the certificate reloaded on SIGHUP, a bad certificate refused at start-up. Checked with the real
``openai`` package over a self-signed certificate made here (docs/deployment.md#tls)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import signal
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmgw.server.tls import server_context

from .conftest import LLMGW

pytestmark = pytest.mark.slow


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: ``(cert.pem, key.pem)`` in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = folder / "cert.pem", folder / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_pem, key_pem


def _peer_name(url: str, ca: Path, **ctx_kw: Any) -> str:
    """The common name of the certificate the server presents to a fresh connection."""
    ctx = ssl.create_default_context(cafile=str(ca))
    for name, value in ctx_kw.items():
        setattr(ctx, name, value)
    host, port = url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert()
        assert cert is not None
        subject: Any = cert["subject"]
        return next(str(v) for rdn in subject for k, v in rdn if k == "commonName")


def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_https_with_the_openai_client_hsts_tls12_floor_and_sighup_reload(
    serve_process: Any, emulator: Any, key: Any, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    cert, keyfile = _self_signed(live, "first")
    proc, url = serve_process(
        emulator.url,
        server=f'ssl_certfile = "{cert}"\nssl_keyfile = "{keyfile}"\nhsts_seconds = 31536000',
        verify=cert,
    )
    assert url.startswith("https://")
    log = (tmp_path / "serve.log").read_text()
    assert f"serving on {url}" in log

    # the real openai package, trusting only the self-signed certificate
    with openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=str(cert))) as http:
        oa = openai.OpenAI(
            base_url=f"{url}/v1", api_key=key.secret, http_client=http, max_retries=0
        )
        resp = oa.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "over tls"}]
        )
        assert resp.headers["strict-transport-security"] == "max-age=31536000"
        assert resp.parse().choices[0].message.content == "Echo: over tls"
        stream = oa.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "a stream over tls"}],
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Echo: a stream over tls"

    # a client that does not trust the certificate fails; plain http on the port gets no answer
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=f"{url}/v1", api_key=key.secret, max_retries=0).models.list()
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=3)

    # TLS 1.2 is the floor: a 1.2 client gets a forward-secret AEAD suite, a 1.1 client nothing
    assert _peer_name(url, cert, maximum_version=ssl.TLSVersion.TLSv1_2) == "first"
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.maximum_version = ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    host, port = url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        suite = tls.cipher()
        assert (
            suite is not None
            and suite[0].startswith("ECDHE-")
            and ("GCM" in suite[0] or "CHACHA" in suite[0])
        )
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        socket.create_connection((host, int(port)), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname=host),
    ):
        pass
    live_ctx = server_context(cert, keyfile)  # what serve builds: the floor is set, not implied
    assert live_ctx.minimum_version == ssl.TLSVersion.TLSv1_2

    # renewed files + SIGHUP: new connections get the new certificate, no restart
    new_cert, new_key = _self_signed(tmp_path / "renewed", "second")
    cert.write_bytes(new_cert.read_bytes())
    keyfile.write_bytes(new_key.read_bytes())
    proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: "TLS certificate reloaded" in (tmp_path / "serve.log").read_text())
    assert _peer_name(url, new_cert) == "second"

    # a broken renewal is refused and logged; the running certificate stays
    cert.write_text("not a certificate\n")
    proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: "reload failed" in (tmp_path / "serve.log").read_text())
    assert _peer_name(url, new_cert) == "second"
    assert (
        httpx.get(
            f"{url}/readyz", verify=ssl.create_default_context(cafile=str(new_cert))
        ).status_code
        == 200
    )
    assert proc.poll() is None

    # /metrics: the served certificate's expiry and the reloads by result (TLS_SERIES, the
    # LlmgwTLSCertificateExpiring and LlmgwTLSReloadFailed rules)
    metrics = httpx.get(
        f"{url}/metrics", verify=ssl.create_default_context(cafile=str(new_cert))
    ).text
    expiry = float(
        re.search(r"^llmgw_tls_certificate_expiry_timestamp_seconds (\S+)$", metrics, re.M)[1]  # type: ignore[index]
    )
    assert 0 < expiry - time.time() <= 86400 + 60  # the renewed certificate: valid for one day
    assert 'llmgw_tls_reloads_total{result="ok"} 1.0' in metrics
    assert 'llmgw_tls_reloads_total{result="failed"} 1.0' in metrics

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_a_certificate_that_does_not_load_stops_serve_with_one_line(
    home: Path, db_file: str, test_engine: Any, tmp_path: Path
) -> None:
    cert, _ = _self_signed(tmp_path / "a", "a")
    _, other_key = _self_signed(tmp_path / "b", "b")  # not cert's key
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_file}"\n\n'
        f'[server]\nssl_certfile = "{cert}"\nssl_keyfile = "{other_key}"\n'
    )
    out = subprocess.run(
        [LLMGW, "--config", str(cfg), "serve", "--port", "0"],
        env={"LLMGW_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("Error: server.ssl_certfile: cannot load"), out.stderr
    assert "Traceback" not in out.stderr and "serving on" not in out.stderr
