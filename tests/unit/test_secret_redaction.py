"""Redaction edge cases found in the AUTH-7 review: cut secrets, error params, URL query passwords."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmgw.config import ProviderConfig
from llmgw.errors import LlmgwError
from llmgw.providers.openai_compat import map_status
from llmgw.storage.db import redact_url

SECRET = "Zq9vT3kL0pXw7RmN2bYc8HdJ5sFa1GeU"  # no sk-/bearer shape: only the exact match hides it


def _text(err: LlmgwError) -> str:
    return f"{err} {err.hint or ''} {getattr(err, 'param', '') or ''}"


@pytest.mark.parametrize("offset", [170, 280])
def test_gigachat_error_cut_through_a_secret_leaks_no_part_of_it(offset: int) -> None:
    """Messages used to be cut to 200/300 characters *before* redaction: a secret straddling the
    cut was no longer an exact match and its first part reached the client."""
    from llmgw.providers.gigachat import GigaChatProvider

    provider = GigaChatProvider(
        ProviderConfig(name="giga", kind="gigachat", base_url="http://127.0.0.1:9/api/v1"),
        SECRET,
    )
    message = "x" * offset + " credential " + SECRET + " was refused"
    body = orjson.dumps({"status": 400, "message": message})
    err = provider._error(400, {}, body, "tok-unused")
    assert SECRET[:8] not in _text(err)
    oauth = provider._oauth_detail(orjson.dumps({"code": 6, "message": message}))
    assert SECRET[:8] not in oauth


@pytest.mark.parametrize("offset", [280])
def test_yandexgpt_error_cut_through_a_secret_leaks_no_part_of_it(offset: int) -> None:
    from llmgw.providers.yandexgpt import YandexGPTProvider

    provider = YandexGPTProvider(
        ProviderConfig(
            name="yc", kind="yandexgpt", base_url="http://127.0.0.1:9", folder_id="b1gfolder"
        ),
        SECRET,
    )
    message = "x" * offset + " key " + SECRET + " is not valid"
    err = provider._error(400, {}, orjson.dumps({"error": {"message": message}}), None)
    assert SECRET[:8] not in _text(err)


def test_openai_error_param_is_redacted() -> None:
    """``error.param`` of an upstream 400 is passed on to the client: it must be redacted too."""
    body = orjson.dumps(
        {"error": {"message": "bad header", "param": f"Authorization: Bearer {SECRET}"}}
    )
    err = map_status("up", 400, {}, body, secrets=(SECRET,))
    assert SECRET not in _text(err)
    assert err.http_status == 400
    body = orjson.dumps({"error": {"message": "bad", "param": f"key={SECRET}"}})
    assert SECRET not in _text(map_status("up", 422, {}, body, secrets=(SECRET,)))


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://llmgw@db.example:5432/llmgw?password={SECRET}",
        f"postgresql://db.example/llmgw?sslmode=require&sslpassword={SECRET}",
        f"redis://127.0.0.1:6379/0?password={SECRET}",
        f"postgresql://llmgw:{SECRET}@db.example/llmgw",
        # a raw "@" in the password used to make its tail the host: u:***@<tail>@db.example
        f"postgresql://llmgw:p@{SECRET}@db.example/llmgw",
        f"postgresql://llmgw:{SECRET}@db.example:54x32/llmgw",  # bad port: no parse, no leak
    ],
)
def test_redact_url_hides_passwords_in_the_query_string(url: str) -> None:
    out = redact_url(url)
    assert SECRET not in out
    assert out.split("://", 1)[0] == url.split("://", 1)[0]
    assert "db.example" in out or "127.0.0.1" in out


def test_config_show_masks_a_query_string_password(cli: Any, home: Path) -> None:
    env = {
        "LLMGW_DATABASE_URL": f"postgresql://llmgw@db.example/llmgw?password={SECRET}",
        "LLMGW_REDIS_URL": f"redis://127.0.0.1:6379/0?password={SECRET}x",
    }
    res = cli("config", "show", "--json", env=env)
    assert res.exit_code == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    rows = {r["key"]: r["value"] for r in json.loads(res.stdout)["settings"]}
    assert rows["database.url"].startswith("postgresql://llmgw@db.example/llmgw?password=")
    table = cli("config", "show", env=env)
    assert table.exit_code == 0 and SECRET not in table.stdout + table.stderr


def test_config_show_masks_credentials_in_a_provider_base_url(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[[providers]]\nname = "proxy"\nkind = "openai"\n'
        f'base_url = "https://llmgw:{SECRET}@proxy.example/v1"\n\n'
        '[[providers]]\nname = "plain"\nkind = "openai"\n'
        'base_url = "http://127.0.0.1:9001/v1?api-version=2024-06-01"\n'
    )
    res = cli("--config", str(cfg), "config", "show", "--json")
    assert res.exit_code == 0, res.stderr
    assert SECRET not in res.stdout
    rows = {r["key"]: r["value"] for r in json.loads(res.stdout)["settings"]}
    assert rows["providers.0.base_url"] == "https://llmgw:***@proxy.example/v1"
    assert rows["providers.1.base_url"] == "http://127.0.0.1:9001/v1?api-version=2024-06-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"https://u:{SECRET}@proxy.example/v1", "https://u:***@proxy.example/v1"),
        (f"https://proxy.example/v1?password={SECRET}", None),
        (
            f"https://gemini.example/v1beta?key={SECRET}",
            "https://gemini.example/v1beta?key=***",
        ),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://127.0.0.1:9001/v1?api-version=1", "http://127.0.0.1:9001/v1?api-version=1"),
        ("not a url @ all", "not a url @ all"),
    ],
)
def test_mask_url(value: str, expected: str | None) -> None:
    from llmgw.storage.db import mask_url

    out = mask_url(value)
    assert SECRET not in out
    if expected is not None:
        assert out == expected


def test_database_url_with_a_bad_port_is_a_config_error(cli: Any) -> None:
    """It used to escape as an unexpected ValueError (exit 1, "re-run with --debug")."""
    env = {"LLMGW_DATABASE_URL": f"postgresql://llmgw:{SECRET}@db.example:54x32/llmgw"}
    res = cli("keys", "list", env=env)
    assert res.exit_code == 2, res.stderr
    assert "not a valid URL" in res.stderr
    assert SECRET not in res.stdout + res.stderr
