"""``llmgw providers test`` and ``llmgw serve`` trust the same CAs for a provider's ``ca_bundle``.

Before, the CLI built its own TLS context (only the bundle, else ``certifi``, which is not a
dependency, and probed ``ca_file``/``ca_cert`` fields that do not exist), so it could pass where the
server failed and the other way round. Both now use ``llmgw.providers.tls.ssl_context``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmgw.config import load_settings
from llmgw.emulators.openai import create_app as openai_emulator

from .conftest import UPSTREAM_KEY, running

MSG = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def _config(home: Path, url: str, db_file: str, ca: Path | None) -> None:
    bundle = f'ca_bundle = "{ca}"\n' if ca is not None else ""
    (home / "config.toml").write_text(
        f'[database]\nurl = "{db_file}"\n\n'
        f'[[providers]]\nname = "openai"\nkind = "openai"\nbase_url = "{url}/v1"\n'
        f'api_key_env = "EMULATOR_API_KEY"\nmodels = ["gpt-4o-mini"]\n{bundle}',
        encoding="utf-8",
    )


def _unrelated_ca(path: Path) -> Path:
    """A self-signed CA certificate that signed nothing the test serves."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unrelated Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("trust", "ok"),
    [("none", False), ("bundle", True), ("system-plus-other-bundle", True)],
)
def test_providers_test_and_the_server_agree_on_a_custom_ca_bundle(
    trust: str,
    ok: bool,
    cli: Any,
    home: Path,
    db_file: str,
    test_engine: Any,
    make_key: Callable[..., Any],
    tls_upstream: Callable[[Any], tuple[str, Path]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """``system-plus-other-bundle`` is GigaChat's case: the bundle holds the Russian root for one
    host while another host has a certificate from the system store (here: ``SSL_CERT_FILE``).
    The old CLI trusted only the bundle there and failed while the server worked."""
    monkeypatch.setenv("EMULATOR_API_KEY", UPSTREAM_KEY)
    url, ca = tls_upstream(openai_emulator(api_key=UPSTREAM_KEY))
    bundle = {"none": None, "bundle": ca}.get(trust)
    if trust == "system-plus-other-bundle":
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # OpenSSL's default store, read per context
        bundle = _unrelated_ca(tmp_path / "other-root.pem")
    _config(home, url, db_file, bundle)

    r = cli("providers", "test", "openai", "--timeout", "5")

    auth = {"Authorization": f"Bearer {make_key('tls').secret}"}

    async def serve_one() -> httpx.Response:
        async with running(load_settings().settings) as (_, client):
            return await client.post("/v1/chat/completions", json=MSG, headers=auth)

    served = asyncio.run(serve_one())

    if ok:  # the upstream's root is trusted by both
        assert r.exit_code == 0, r.stderr
        assert served.status_code == 200, served.text
    else:  # neither trusts a root that is in no system store
        assert r.exit_code == 8 and "TLS failure" in r.stderr
        assert served.status_code == 502
        assert "could not be verified" in served.json()["error"]["message"]
