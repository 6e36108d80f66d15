"""``llmgw providers``: list, status, test (against real emulators and sockets), set-secret."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from llmgw.emulators.openai import create_app
from llmgw.emulators.runner import RunningServer, serve_in_thread


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring backend for this test process."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(old)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(old)


def write_config(home: Path, providers: str, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(providers + extra, encoding="utf-8")


def provider_toml(
    name: str,
    url: str,
    *,
    env: str = "TEST_LOCAL_KEY",
    models: str = '"gpt-4o-mini"',
    more: str = "",
) -> str:
    return (
        f'[[providers]]\nname = "{name}"\nkind = "openai"\nbase_url = "{url}"\n'
        f'api_key_env = "{env}"\nmodels = [{models}]\n{more}\n'
    )


@pytest.fixture
def emulator() -> Iterator[RunningServer]:
    with serve_in_thread(create_app(api_key="sk-emu-good")) as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- list -----------------------------------------------------------------------------------------


def test_list_shows_providers_aliases_and_credential_source(
    cli, home: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        home,
        provider_toml("local", "http://127.0.0.1:9/v1")
        + provider_toml("backup", "http://127.0.0.1:9/v1", env="TEST_BACKUP_KEY")
        + provider_toml("spare", "http://127.0.0.1:9/v1", env="TEST_SPARE_KEY"),
        '[aliases]\nfast = ["local/gpt-4o-mini", {target = "backup/gpt-4o-mini", weight = 2}]\n',
    )
    monkeypatch.setenv("TEST_LOCAL_KEY", "sk-from-env-123")
    memory_keyring.set_password("llmgw", "backup", "sk-from-keyring-456")
    r = cli("providers", "list", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    by = {p["name"]: p for p in data["providers"]}
    assert by["local"]["credential"] == "env TEST_LOCAL_KEY"
    assert by["backup"]["credential"] == "keyring"
    assert by["spare"]["credential"].startswith("missing")
    assert by["local"]["models"] == ["gpt-4o-mini"]
    assert data["aliases"] == {"fast": ["local/gpt-4o-mini", "backup/gpt-4o-mini"]}
    assert "sk-from" not in r.stdout  # never the secret itself
    table = cli("providers", "list")
    assert table.exit_code == 0
    assert "local" in table.stdout and "fast" in table.stdout and "sk-from" not in table.stdout


# -- status ---------------------------------------------------------------------------------------


def test_status_reads_provider_status_from_the_database(cli, home: Path) -> None:
    from llmgw.errors import UpstreamError
    from llmgw.routing.health import HealthTracker, HealthWriter
    from llmgw.storage.db import make_engine
    from llmgw.storage.schema import upgrade

    write_config(  # only existing providers' rows are shown
        home,
        '[[providers]]\nname = "local"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[[providers]]\nname = "giga"\nkind = "gigachat"\n',
    )
    engine = make_engine(f"sqlite:///{home / 'llmgw.db'}")
    upgrade(engine)
    h = HealthTracker()
    h.record_success("local", "gpt-4o-mini", 0.042)
    h.record_failure("giga", "GigaChat", UpstreamError("upstream answered 500", provider="giga"))
    HealthWriter(engine, h, interval=60).write_once()
    engine.dispose()

    r = cli("providers", "status", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {(x["provider"], x["model"]): x for x in json.loads(r.stdout)}
    assert rows[("local", "gpt-4o-mini")]["status"] == "healthy"
    assert rows[("local", "gpt-4o-mini")]["latency_ms"] == pytest.approx(42.0)
    assert rows[("giga", "GigaChat")]["last_error"] == "UpstreamError: upstream answered 500"
    table = cli("providers", "status")
    assert table.exit_code == 0 and "GigaChat" in table.stdout and "42" in table.stdout


def test_status_url_unreachable_is_one_clear_line(cli) -> None:
    key = "llmgw_" + "k" * 43
    r = cli("providers", "status", "--url", f"http://127.0.0.1:{free_port()}", "--api-key", key)
    assert r.exit_code == 9
    assert "cannot reach the llmgw server" in r.stderr and key not in r.stderr
    assert "Traceback" not in r.stderr


# -- test -----------------------------------------------------------------------------------------


def test_test_unknown_provider(cli, home: Path) -> None:
    write_config(home, provider_toml("local", "http://127.0.0.1:9/v1"))
    r = cli("providers", "test", "nope")
    assert r.exit_code == 4
    assert "no provider named 'nope'" in r.stderr


def test_test_connection_refused(cli, home: Path) -> None:
    port = free_port()
    write_config(home, provider_toml("local", f"http://127.0.0.1:{port}/v1"))
    r = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    assert r.exit_code == 8
    assert f"connection refused by 127.0.0.1:{port}" in r.stderr


def test_test_tls_against_a_plain_http_port(cli, home: Path, emulator: RunningServer) -> None:
    write_config(home, provider_toml("local", f"https://127.0.0.1:{emulator.port}/v1"))
    r = cli("providers", "test", "local", "--timeout", "3", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    assert r.exit_code == 8
    assert "TLS failure" in r.stderr


@pytest.fixture
def self_signed_tls(private_ca: tuple[Path, Path, Path]) -> Iterator[int]:
    """A real TLS server whose certificate chains to a root no CA bundle here trusts."""
    _, cert, key = private_ca
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        lsock.close()


def test_test_untrusted_certificate(cli, home: Path, self_signed_tls: int) -> None:
    write_config(home, provider_toml("local", f"https://127.0.0.1:{self_signed_tls}/v1"))
    r = cli("providers", "test", "local", "--timeout", "3", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    assert r.exit_code == 8
    assert "TLS failure: certificate of 127.0.0.1" in r.stderr
    assert "CA bundle" in r.stderr


# -- set-secret -----------------------------------------------------------------------------------


def test_set_secret_from_env_stores_in_keyring(
    cli, home: Path, memory_keyring: MemoryKeyring
) -> None:
    write_config(home, provider_toml("local", "http://127.0.0.1:9/v1"))
    r = cli(
        "providers",
        "set-secret",
        "local",
        "--from-env",
        "MY_SECRET_VAR",
        env={"MY_SECRET_VAR": "sk-stored-789"},
    )
    assert r.exit_code == 0, r.stderr
    assert memory_keyring.store[("llmgw", "local")] == "sk-stored-789"
    assert "sk-stored-789" not in r.stdout + r.stderr
    assert cli("providers", "list", "--json").stdout.count('"keyring"') == 1


def test_set_secret_from_stdin_and_env_precedence_note(
    cli, home: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    write_config(home, provider_toml("local", "http://127.0.0.1:9/v1"))
    monkeypatch.setattr("sys.stdin", io.StringIO("sk-piped-000\n"))
    r = cli("providers", "set-secret", "local", "--stdin", env={"TEST_LOCAL_KEY": "sk-env-wins"})
    assert r.exit_code == 0, r.stderr
    assert memory_keyring.store[("llmgw", "local")] == "sk-piped-000"
    assert "TEST_LOCAL_KEY is set and takes precedence" in r.stdout


def test_set_secret_rejects_empty_and_unknown(
    cli, home: Path, memory_keyring: MemoryKeyring
) -> None:
    write_config(home, provider_toml("local", "http://127.0.0.1:9/v1"))
    r = cli("providers", "set-secret", "local", "--from-env", "UNSET_VAR_XYZ")
    assert r.exit_code == 2 and "UNSET_VAR_XYZ is not set" in r.stderr
    r = cli("providers", "set-secret", "other", "--from-env", "UNSET_VAR_XYZ")
    assert r.exit_code == 4
    assert memory_keyring.store == {}


def test_set_secret_without_keyring_backend_gives_env_hint(
    cli, home: Path, no_keyring: None
) -> None:
    write_config(home, provider_toml("local", "http://127.0.0.1:9/v1"))
    r = cli(
        "providers",
        "set-secret",
        "local",
        "--from-env",
        "MY_SECRET_VAR",
        env={"MY_SECRET_VAR": "sk-x"},
    )
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("Error: no OS keyring backend is available")
    assert "TEST_LOCAL_KEY" in r.stderr  # the env-var hint names the configured variable
    assert "sk-x" not in r.stderr


def test_test_ok_reports_latency(cli, home: Path, emulator: RunningServer) -> None:
    write_config(home, provider_toml("local", f"{emulator.url}/v1"))
    r = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("OK local: 1-token chat with gpt-4o-mini in ")
    assert emulator.app.state.stats.requests == 1  # exactly one real round trip
    j = cli("providers", "test", "local", "--json", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    data = json.loads(j.stdout)
    assert data["ok"] is True and data["check"] == "chat" and data["latency_ms"] > 0


def test_test_lists_models_when_none_configured(cli, home: Path, emulator: RunningServer) -> None:
    write_config(home, provider_toml("local", f"{emulator.url}/v1", models=""))
    r = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-emu-good"})
    assert r.exit_code == 0, r.stderr
    assert "2 models listed" in r.stdout


def test_test_auth_rejected(cli, home: Path, emulator: RunningServer) -> None:
    write_config(home, provider_toml("local", f"{emulator.url}/v1"))
    r = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-emu-WRONG"})
    assert r.exit_code == 6
    assert "local: auth rejected by the upstream" in r.stderr
    assert "set-secret local" in r.stderr and "TEST_LOCAL_KEY" in r.stderr
    assert "sk-emu-WRONG" not in r.stderr


def test_test_missing_credential(cli, home: Path, emulator: RunningServer) -> None:
    write_config(home, provider_toml("local", f"{emulator.url}/v1"))
    r = cli("providers", "test", "local")
    assert r.exit_code == 2
    assert "no credential found" in r.stderr


def test_test_timeout(cli, home: Path) -> None:
    with serve_in_thread(create_app(fault="hang_before_headers")) as hung:
        write_config(
            home, provider_toml("local", f"{hung.url}/v1", more="first_byte_timeout = 0.5\n")
        )
        r = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-any-key"})
    assert r.exit_code == 8
    assert "local: timeout:" in r.stderr


def test_test_gigachat_checks_oauth_host_and_chats(cli, home: Path) -> None:
    from llmgw.emulators import gigachat as giga_emu

    with serve_in_thread(giga_emu.create_app(max_concurrency=8)) as g:
        write_config(
            home,
            f'[[providers]]\nname = "giga"\nkind = "gigachat"\nbase_url = "{g.url}/api/v1"\n'
            f'auth_url = "{g.url}/api/v2/oauth"\nscope = "GIGACHAT_API_B2B"\n'
            f'api_key_env = "GIGA_KEY"\nmodels = ["GigaChat"]\n',
        )
        ok = cli("providers", "test", "giga", env={"GIGA_KEY": giga_emu.DEFAULT_CREDENTIALS})
        assert ok.exit_code == 0, ok.stderr
        assert ok.stdout.startswith("OK giga: 1-token chat with GigaChat")
        assert g.app.state.emulator.oauth_calls == 1
        bad = cli("providers", "test", "giga", env={"GIGA_KEY": "d3Jvbmc6a2V5"})
        assert bad.exit_code == 6, bad.stderr
        assert "giga: auth rejected by the upstream" in bad.stderr
        assert "d3Jvbmc6a2V5" not in bad.stderr


def test_secret_from_keyring_is_used_and_env_still_wins(
    cli, home: Path, emulator: RunningServer, memory_keyring: MemoryKeyring
) -> None:
    write_config(home, provider_toml("local", f"{emulator.url}/v1"))
    stored = cli(
        "providers", "set-secret", "local", "--from-env", "SRC", env={"SRC": "sk-emu-good"}
    )
    assert stored.exit_code == 0, stored.stderr
    ok = cli("providers", "test", "local")  # no env variable: the keyring's secret is used
    assert ok.exit_code == 0, ok.stderr
    wins = cli("providers", "test", "local", env={"TEST_LOCAL_KEY": "sk-emu-stale"})
    assert wins.exit_code == 6  # the (wrong) env variable takes precedence over the keyring


def test_list_masks_credentials_in_base_url(cli, home) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\n'
        'base_url = "https://user:hunter2secret@example.invalid/v1"\nmodels = ["m"]\n'
    )
    r = cli("providers", "list", "--json")
    assert r.exit_code == 0, r.stderr
    assert "hunter2secret" not in r.stdout
    assert "example.invalid" in r.stdout


def test_list_names_the_service_account_key_file_as_the_credential(cli, home) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[[providers]]\nname = "ya"\nkind = "yandexgpt"\nbase_url = "http://127.0.0.1:9"\n'
        'folder_id = "b1gfolder"\nservice_account_key_file = "sa-key.json"\nmodels = ["m"]\n'
    )
    r = cli("providers", "list", "--json")
    assert r.exit_code == 0, r.stderr
    (ya,) = json.loads(r.stdout)["providers"]
    assert ya["credential"] == "service account key sa-key.json"  # not "missing"


class _NoDbusKeyring(MemoryKeyring):
    """A Secret Service backend on a machine without D-Bus: every call raises."""

    def get_password(self, service: str, username: str) -> str | None:
        raise RuntimeError("dbus is not running")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("dbus is not running")


def test_list_and_set_secret_survive_a_broken_keyring(cli, home, monkeypatch) -> None:
    write_config(home, '[[providers]]\nname = "p"\nkind = "openai"\napi_key_env = "P_KEY"\n')
    monkeypatch.setenv("SRC_SECRET", "s3cret-value")
    old = keyring.get_keyring()
    keyring.set_keyring(_NoDbusKeyring())
    try:
        r = cli("providers", "list", "--json")
        assert r.exit_code == 0, r.stderr
        assert "keyring unavailable" in r.stdout
        r = cli("providers", "set-secret", "p", "--from-env", "SRC_SECRET")
        assert r.exit_code == 2
        assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
        assert "s3cret-value" not in r.stderr
    finally:
        keyring.set_keyring(old)


def test_test_yandex_service_account_checks_the_iam_host(cli, home: Path, tmp_path: Path) -> None:
    """With a service-account key file the IAM token endpoint is a host the provider needs:
    `providers test` checks it like GigaChat's OAuth host (before, only GigaChat's was checked)."""
    from llmgw.emulators import yandexgpt as yc_emu

    key = yc_emu.make_service_account_key()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(key))
    dead = free_port()
    with serve_in_thread(yc_emu.create_app(service_account_keys=[key])) as y:

        def config(iam: str) -> None:
            write_config(
                home,
                f'[[providers]]\nname = "yc"\nkind = "yandexgpt"\nbase_url = "{y.url}"\n'
                f'iam_url = "{iam}"\nfolder_id = "{yc_emu.DEFAULT_FOLDER}"\n'
                f'service_account_key_file = "{key_file}"\nmodels = ["yandexgpt-lite"]\n',
            )

        config(f"http://127.0.0.1:{dead}/iam/v1/tokens")
        r = cli("providers", "test", "yc")
        assert r.exit_code == 8 and f"connection refused by 127.0.0.1:{dead}" in r.stderr
        config(f"{y.url}/iam/v1/tokens")
        ok = cli("providers", "test", "yc")
        assert ok.exit_code == 0, ok.stderr


def test_list_flags_a_model_with_no_known_price(cli, home) -> None:
    """A model neither configured nor in the bundled table is flagged, not silently free."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'models = ["gpt-4o-mini", "llama3:8b"]\n\n'
        '[[providers]]\nname = "ya"\nkind = "yandexgpt"\nfolder_id = "b1g"\n'
        'models = ["yandexgpt-lite"]\n'
    )
    r = cli("providers", "list", "--json")
    assert r.exit_code == 0, r.stderr
    by = {p["name"]: p for p in json.loads(r.stdout)["providers"]}
    assert by["p"]["unpriced"] == ["llama3:8b"] and by["p"]["currency"] == "USD"
    assert by["ya"]["unpriced"] == [] and by["ya"]["currency"] == "RUB"
    table = cli("providers", "list")
    assert "llama3:8b (no price)" in table.stdout.replace("\n", "")
    assert "gpt-4o-mini (no price)" not in table.stdout
    assert "warning: no price for p/llama3:8b" in table.stderr


def test_prices_shows_where_each_price_comes_from(cli, home) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'models = ["gpt-4o-mini", "gpt-4o", "llama3:8b"]\n'
        '[providers.prices."gpt-4o"]\ninput = 1\noutput = 2\n\n'
        '[[providers]]\nname = "ya"\nkind = "yandexgpt"\nfolder_id = "b1g"\n'
        'models = ["yandexgpt"]\n'
    )
    r = cli("providers", "prices", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {(x["provider"], x["model"]): x for x in json.loads(r.stdout)}
    assert rows[("p", "gpt-4o")]["source"] == "config" and rows[("p", "gpt-4o")]["input"] == "1"
    assert rows[("p", "gpt-4o-mini")]["source"] == "bundled"
    assert rows[("p", "llama3:8b")]["source"] == "unpriced"
    # the version priced apart is shown with the model it belongs to
    assert rows[("ya", "yandexgpt:rc")]["units"]["input_multiplier"] == "4"
    assert rows[("ya", "yandexgpt")]["currency"] == "RUB"
    assert ("p", "o3") not in rows  # not offered: only with --all
    everything = json.loads(cli("providers", "prices", "p", "--all", "--json").stdout)
    assert {x["provider"] for x in everything} == {"p"} and any(
        x["model"] == "o3" for x in everything
    )
    table = cli("providers", "prices")
    assert table.exit_code == 0
    text = table.stdout.replace("\n", "")
    assert "bundled table 2026." in text and "unpriced" in text and "config" in text
    missing = cli("providers", "prices", "nope")
    assert missing.exit_code != 0 and missing.stderr.startswith("Error: no provider named 'nope'")
