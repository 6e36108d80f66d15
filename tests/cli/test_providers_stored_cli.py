"""``llmgw providers add|edit|disable|enable|remove|stored`` on the local database: the
credential read from stdin is sealed and never printed, destructive commands ask first."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import CliResult

SECRET = "sk-stored-provider-credential-0123456789"


def test_add_edit_disable_remove_a_stored_provider(
    cli: Callable[..., CliResult], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = cli
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    r = run(
        "providers", "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1",
        "-m", "llama", "--api-key-stdin", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    added = json.loads(r.stdout)
    assert (added["name"], added["has_secret"], added["models"]) == ("vllm", True, ["llama"])
    assert SECRET not in r.stdout + r.stderr
    r = run("providers", "edit", "vllm", "-m", "llama", "-m", "qwen", "--json")
    assert json.loads(r.stdout)["models"] == ["llama", "qwen"]
    r = run("providers", "add", "vllm", "--kind", "openai")
    assert r.exit_code == 5 and "exists" in r.stderr
    r = run("providers", "disable", "vllm")
    assert r.exit_code == 2 and "--yes" in r.stderr  # not a terminal: refused, nothing changed
    r = run("providers", "stored", "--json")
    assert json.loads(r.stdout)[0]["enabled"] is True
    r = run("providers", "disable", "vllm", "--yes", "--json")
    assert json.loads(r.stdout)["enabled"] is False
    table = run("providers", "stored")
    assert "vllm" in table.stdout and "sealed" in table.stdout and SECRET not in table.stdout
    r = run("providers", "remove", "vllm", "--yes")
    assert r.exit_code == 0 and "removed provider vllm" in r.stdout
    assert json.loads(run("providers", "stored", "--json").stdout) == []
    engine = sa.create_engine(f"sqlite:///{home / 'llmgw.db'}")
    with engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT action, detail FROM audit_log")).all()
    engine.dispose()
    actions = [a for a, _ in audit if a.startswith("providers.")]
    assert actions == ["providers.add", "providers.edit", "providers.disable", "providers.remove"]
    assert SECRET not in str(audit)
    r = run("providers", "remove", "vllm", "--yes")
    assert r.exit_code == 4 and "no stored provider" in r.stderr


def test_prices_list_a_stored_provider_with_the_config_files(
    cli: Callable[..., CliResult],
) -> None:
    """Without --url the prices come from the config file and the ``providers`` table."""
    r = cli("providers", "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "-m", "gpt-4o-mini")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = cli("providers", "prices", "vllm", "--json")
    assert r.exit_code == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert (row["provider"], row["model"], row["source"]) == ("vllm", "gpt-4o-mini", "bundled")
    assert cli("providers", "disable", "vllm", "--yes").exit_code == 0
    r = cli("providers", "prices", "vllm")
    assert r.exit_code == 4 and "no provider named 'vllm'" in r.stderr  # disabled: not priced


def test_edit_changes_only_the_given_fields_and_unsets_optional_ones(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    r = cli("providers", "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "-m", "llama", "--max-concurrency", "4", "--set", "idle_timeout=45",
            "--api-key-stdin", "--json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["idle_timeout"] == 45
    r = cli("providers", "edit", "vllm", "--max-concurrency", "8", "--json")
    got = json.loads(r.stdout)
    assert (got["max_concurrency"], got["base_url"], got["models"], got["idle_timeout"]) == (
        8, "http://127.0.0.1:9/v1", ["llama"], 45,
    )  # fmt: skip
    assert got["has_secret"] is True  # untouched
    prices = '{"llama": {"input": 1, "output": 2}}'
    r = cli("providers", "edit", "vllm", "--unset", "max_concurrency", "--unset", "idle-timeout",
            "--set", f"prices={prices}", "--set", "currency=RUB", "--json")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert "max_concurrency" not in got and "idle_timeout" not in got  # back to the defaults
    assert got["currency"] == "RUB" and got["prices"]["llama"]["input"] == "1"
    assert got["models"] == ["llama"] and got["revision"] == 3
    r = cli("providers", "edit", "vllm", "--remove-api-key", "--json")
    assert json.loads(r.stdout)["has_secret"] is False
    for args, says in [
        (("--unset", "kind"), "cannot change on a stored provider"),
        (("--unset", "api_key_env"), "cannot be set on a stored provider"),
        (("--unset", "colour"), "'colour': is not a provider field"),
        (("--set", "idle_timeout"), "use FIELD=VALUE"),
        (("--max-concurrency", "2", "--unset", "max_concurrency"), "both set and unset"),
        (("--set", "idle_timeout=-1"), "greater than 0"),
        ((), "nothing to change"),
    ]:
        r = cli("providers", "edit", "vllm", *args)
        assert r.exit_code == 2 and says in r.stderr, (args, r.stderr)
    assert json.loads(cli("providers", "stored", "--json").stdout)[0]["revision"] == 4


def test_models_without_url_ask_a_stored_provider_with_its_sealed_credential(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, make_upstream: Any
) -> None:
    """``providers models`` without --url asks the stored providers too, opening the sealed
    credential the upstream demands (a wrong or missing one would be listed as an error)."""
    up = make_upstream(api_key=SECRET, models=("stored-model",))
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    r = cli("providers", "add", "vllm", "--kind", "openai", "--base-url", up.base_url,
            "--api-key-stdin")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = cli("providers", "models", "--provider", "vllm", "--json")
    assert r.exit_code == 0, r.stderr
    catalog = json.loads(r.stdout)
    assert [m["id"] for m in catalog["data"]] == ["vllm/stored-model"]
    assert catalog["providers"][0]["error"] is None and SECRET not in r.stdout


def test_providers_test_without_url_reaches_a_stored_provider_with_its_sealed_credential(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch, make_upstream: Any
) -> None:
    """``providers test NAME`` without --url knows the enabled stored providers: the 1-token chat
    goes out with the opened credential (the upstream refuses any other); a disabled one is an
    unknown name."""
    up = make_upstream(api_key=SECRET, models=("stored-model",))
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    r = cli("providers", "add", "vllm", "--kind", "openai", "--base-url", up.base_url,
            "-m", "stored-model", "--api-key-stdin")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = cli("providers", "test", "vllm", "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert (result["provider"], result["check"], result["model"]) == (
        "vllm",
        "chat",
        "stored-model",
    )
    assert SECRET not in r.stdout + r.stderr
    assert cli("providers", "disable", "vllm", "--yes").exit_code == 0
    r = cli("providers", "test", "vllm")
    assert r.exit_code == 4 and "vllm" in r.stderr


def test_a_password_in_a_stored_providers_urls_is_never_shown(
    cli: Callable[..., CliResult],
) -> None:
    """``providers stored`` and add/edit's output mask a URL's password as ``providers list``
    masks the config file's (both were shown in clear)."""
    r = cli(
        "providers", "add", "proxied", "--kind", "gigachat", "-m", "GigaChat",
        "--base-url", "http://ann:url-password-1@127.0.0.1:9/v1",
        "--set", "auth_url=https://ann:url-password-2@127.0.0.1:9/oauth", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    shown = [r.stdout]
    r = cli("providers", "edit", "proxied", "--set", "max_concurrency=4", "--json")
    shown.append(r.stdout)
    for args in (("stored", "--json"), ("stored",), ("list", "--json")):
        shown.append(cli("providers", *args).stdout)
    assert all("url-password" not in out for out in shown), shown
    record = json.loads(shown[0])
    assert record["base_url"] == "http://ann:***@127.0.0.1:9/v1"
    assert record["auth_url"] == "https://ann:***@127.0.0.1:9/oauth"


def test_status_lists_a_stored_provider_until_it_is_removed(
    cli: Callable[..., CliResult], home: Path
) -> None:
    """A removed provider's provider_status rows stay (a gateway may write one again just after
    the removal), but ``providers status`` shows only existing providers, disabled ones too."""
    r = cli("providers", "add", "vllm", "--kind", "openai", "--base-url", "http://127.0.0.1:9/v1",
            "-m", "llama")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    engine = sa.create_engine(f"sqlite:///{home / 'llmgw.db'}")
    with engine.begin() as conn:
        for provider in ("vllm", "gone"):  # "gone": removed before this test began
            conn.execute(
                sa.text(
                    "INSERT INTO provider_status (provider, model, status, error_rate, updated_at)"
                    " VALUES (:p, 'llama', 'healthy', 0.0, '2026-01-01 12:00:00')"
                ),
                {"p": provider},
            )

    def shown() -> list[str]:
        r = cli("providers", "status", "--json")
        assert r.exit_code == 0, r.stderr
        return [row["provider"] for row in json.loads(r.stdout)]

    assert shown() == ["vllm"]
    assert cli("providers", "disable", "vllm", "--yes").exit_code == 0
    assert shown() == ["vllm"]  # disabled still exists
    assert "vllm" in cli("providers", "status").stdout
    assert cli("providers", "remove", "vllm", "--yes").exit_code == 0
    assert shown() == []
    assert "vllm" not in cli("providers", "status").stdout
    with engine.connect() as conn:  # the rows are still there: the readers filter them
        assert conn.execute(sa.text("SELECT count(*) FROM provider_status")).scalar() == 2
    engine.dispose()
