"""GigaChat over TLS with a private root CA: refused without ``ca_bundle``, working with it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmgw.config import ProviderConfig
from llmgw.emulators import gigachat as emulator
from llmgw.errors import UpstreamError
from llmgw.providers.base import CallContext
from llmgw.providers.gigachat import GigaChatProvider
from llmgw.schemas import ChatRequest


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_chain(tmp: Path) -> tuple[Path, Path, Path]:
    """A root CA (like the Russian Trusted Root CA: not in any default store) and a leaf for 127.0.0.1."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Test Trusted Root CA"))
        .issuer_name(_name("Test Trusted Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca, cert, key = _pem_chain(tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        emulator.create_app(max_concurrency=10),
        log_config=None,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}", ca
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def _provider(url: str, ca: Path | None) -> GigaChatProvider:
    config = ProviderConfig(
        name="giga",
        kind="gigachat",
        base_url=f"{url}/api/v1",
        auth_url=f"{url}/api/v2/oauth",
        ca_bundle=ca,
    )
    return GigaChatProvider(config, emulator.DEFAULT_CREDENTIALS)


REQ = ChatRequest.model_validate(
    {"model": "GigaChat-2", "messages": [{"role": "user", "content": "hi"}]}
)
CTX = CallContext(request_id="r1", model="GigaChat-2")


async def test_unknown_root_ca_is_refused_with_a_ca_bundle_hint(
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    p = _provider(url, None)
    try:
        with pytest.raises(UpstreamError, match="could not be verified") as info:
            await p.chat(REQ, CTX)
        with pytest.raises(UpstreamError):  # the API host is verified too (aiohttp side)
            await p.transport.get_json("/models")
    finally:
        await p.aclose()
    assert "ca_bundle" in (info.value.hint or "")


async def test_ca_bundle_makes_both_hosts_verify(tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    p = _provider(url, ca)
    try:
        out = await p.chat(REQ, CTX)
        chunks = [c async for c in p.chat_stream(REQ.model_copy(update={"stream": True}), CTX)]
    finally:
        await p.aclose()
    assert out.body["choices"][0]["message"]["content"] == "GigaChat emulator reply to: hi"
    assert chunks[-1].usage is not None
