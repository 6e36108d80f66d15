"""Settings precedence, sources and config-file errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgw.config import load_settings
from llmgw.errors import ConfigError

GOOD = """
[server]
port = 9000

[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9001/v1"
api_key_env = "LOCAL_API_KEY"
models = ["gpt-4o-mini"]

[aliases]
chat-default = ["local/gpt-4o-mini"]
"""


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD)
    env = {"LLMGW_SERVER__PORT": "9100", "LLMGW_HOME": str(tmp_path)}
    loaded = load_settings(cfg, {"server": {"host": "0.0.0.0"}}, env=env)
    s = loaded.settings
    assert s.server.port == 9100 and loaded.source_of(("server", "port")) == "env"
    assert s.server.host == "0.0.0.0" and loaded.source_of(("server", "host")) == "flag"
    assert s.providers[0].name == "local" and loaded.source_of(("providers",)) == "file"
    assert loaded.source_of(("server", "drain_seconds")) == "default"
    assert s.aliases["chat-default"] == ["local/gpt-4o-mini"]


def test_database_url_short_env_name_and_plain_postgres(tmp_path: Path) -> None:
    env = {"LLMGW_HOME": str(tmp_path), "LLMGW_DATABASE_URL": "postgresql://u:pw@h/db"}
    s = load_settings(env=env).settings
    assert s.database_url == "postgresql://u:pw@h/db"
    assert "pw" not in repr(s)  # a SecretStr, never printed


def test_default_database_is_sqlite_under_home(tmp_path: Path) -> None:
    s = load_settings(env={"LLMGW_HOME": str(tmp_path)}).settings
    assert s.database_url == f"sqlite:///{tmp_path / 'llmgw.db'}"


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD.replace('kind = "openai"', 'kind = "openai"\nbse_url = "x"'))
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={"LLMGW_HOME": str(tmp_path)})
    assert f"{cfg}:8: providers.0.bse_url: unknown setting" in err.value.message


def test_bad_value_names_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD.replace('kind = "openai"', 'kind = "claude"'))
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={"LLMGW_HOME": str(tmp_path)})
    assert f"{cfg}:7: providers.0.kind" in err.value.message


def test_invalid_toml_and_missing_explicit_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="invalid TOML.*line 1"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


def test_duplicate_provider_names_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(GOOD + GOOD.split("[aliases]")[0].replace("[server]\nport = 9000", ""))
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(cfg, env={})
