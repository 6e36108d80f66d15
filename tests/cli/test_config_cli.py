"""``llmgw config show/check/init`` through the real entry point."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest


def _settings(result: Any) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.stderr
    return {row["key"]: row for row in json.loads(result.stdout)["settings"]}


def test_init_writes_a_valid_example_and_refuses_to_overwrite(cli: Any, home: Path) -> None:
    made = cli("config", "init")
    assert made.exit_code == 0, made.stderr
    path = home / "config.toml"
    text = path.read_text()
    tomllib.loads(text)  # valid TOML
    assert "[[providers]]" in text and "[aliases]" in text
    checked = cli("config", "check")
    assert checked.exit_code == 0 and str(path) in checked.stdout
    again = cli("config", "init")
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert path.read_text() == text
    assert cli("config", "init", "--force").exit_code == 0


def test_init_to_an_explicit_path(cli: Any, tmp_path: Path) -> None:
    target = tmp_path / "sub" / "llmgw.toml"
    assert cli("config", "init", str(target)).exit_code == 0
    assert cli("--config", str(target), "config", "check").exit_code == 0


def test_show_names_the_source_of_each_value(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('log_level = "warning"\n[server]\nport = 9001\nhost = "0.0.0.0"\n')
    rows = _settings(
        cli("--config", str(cfg), "config", "show", "--json", env={"LLMGW_SERVER__PORT": "9100"})
    )
    assert rows["server.port"] == {"key": "server.port", "value": 9100, "source": "env"}
    assert rows["server.host"]["value"] == "0.0.0.0" and rows["server.host"]["source"] == "file"
    assert rows["log_level"]["source"] == "file"
    assert rows["server.workers"]["source"] == "default"
    table = cli("--config", str(cfg), "config", "show")
    assert table.exit_code == 0 and str(cfg) in table.stdout


def test_show_masks_secrets(cli: Any) -> None:
    env = {
        "LLMGW_DATABASE_URL": "postgresql://admin:hunter2secret@db.example:5432/llmgw",
        "LLMGW_REDIS_URL": "redis://:redispass99@127.0.0.1:6379/0",
    }
    for args in (("config", "show", "--json"), ("config", "show")):
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.stderr
        assert "hunter2secret" not in result.stdout and "redispass99" not in result.stdout
    rows = _settings(cli("config", "show", "--json", env=env))
    assert rows["database.url"]["value"] == "postgresql://admin:***@db.example:5432/llmgw"
    assert rows["database.url"]["source"] == "env"


def test_check_reports_file_line_and_key(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nhost = "127.0.0.1"\nport = "eighty"\n')
    result = cli("--config", str(cfg), "config", "check")
    assert result.exit_code == 2 and result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {cfg}:3: server.port")


def test_check_rejects_an_alias_to_an_unknown_provider(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "alias.toml"
    cfg.write_text(
        '[[providers]]\nname = "local"\nkind = "openai"\n\n[aliases]\nfast = ["nowhere/m"]\n'
    )
    result = cli("--config", str(cfg), "config", "check")
    assert result.exit_code == 2 and "nowhere/m" in result.stderr


def test_check_rejects_the_redis_rate_limit_backend_without_redis_url(
    cli: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "rl.toml"
    cfg.write_text('[ratelimit]\nbackend = "redis"\n')
    result = cli("--config", str(cfg), "config", "check")
    assert result.exit_code == 2 and "needs redis_url" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1
    cfg.write_text('redis_url = "redis://127.0.0.1:6379/0"\n[ratelimit]\nbackend = "redis"\n')
    assert cli("--config", str(cfg), "config", "check").exit_code == 0


@pytest.mark.parametrize("url", ["ftp://x/v1", "api.example.com/v1", "http://h:abc/v1"])
def test_check_rejects_a_provider_url_that_is_not_http(cli: Any, tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "url.toml"
    cfg.write_text(f'[[providers]]\nname = "p"\nkind = "openai"\nbase_url = "{url}"\n')
    result = cli("--config", str(cfg), "config", "check")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {cfg}:4: providers.0.base_url")


def test_llmgw_config_env_names_the_file(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text("[server]\nport = 7777\n")
    rows = _settings(cli("config", "show", "--json", env={"LLMGW_CONFIG": str(cfg)}))
    assert rows["server.port"]["value"] == 7777 and rows["server.port"]["source"] == "file"
    missing = cli("config", "check", env={"LLMGW_CONFIG": str(tmp_path / "nope.toml")})
    assert missing.exit_code == 2 and "nope.toml" in missing.stderr


def test_the_example_in_docs_config_md_is_valid(cli: Any, tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = tmp_path / "docs-example.toml"
    cfg.write_text(example)
    result = cli("--config", str(cfg), "config", "check")
    assert result.exit_code == 0, result.stderr
    assert "1 providers, 2 aliases" in result.stdout


def test_config_init_writes_the_file_llmgw_reads(cli, tmp_path, home) -> None:
    """Issue 8 item 17: with LLMGW_CONFIG set, `config init` writes there (it wrote
    $LLMGW_HOME/config.toml, which llmgw then ignored); --config wins over both."""
    via_env = tmp_path / "elsewhere" / "llmgw.toml"
    r = cli("config", "init", env={"LLMGW_CONFIG": str(via_env)})
    assert r.exit_code == 0, r.stderr
    assert via_env.is_file() and not (home / "config.toml").exists()
    assert str(via_env) in r.stdout
    shown = cli("config", "show", "--json", env={"LLMGW_CONFIG": str(via_env)})
    import json

    assert json.loads(shown.stdout)["config_file"] == str(via_env)

    via_flag = tmp_path / "flag.toml"
    r = cli("--config", str(via_flag), "config", "init", env={"LLMGW_CONFIG": str(via_env)})
    assert r.exit_code == 0, r.stderr
    assert via_flag.is_file()
