"""Every failure a new user hit is one clear line with a hint that points at the real cause and a
documented exit code, never "unexpected ...Error" (issue 8 item 15)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest


def _one_error(result: Any, code: int) -> tuple[str, str]:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("Error: "), result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr
    return lines[0], (lines[1] if len(lines) == 2 else "")


def test_export_to_a_directory_is_a_usage_error(cli: Any, tmp_path: Path) -> None:
    line, hint = _one_error(cli("usage", "export", "--format", "csv", "--out", str(tmp_path)), 2)
    assert "is a directory" in line and str(tmp_path / "usage.csv") in hint
    assert list(tmp_path.glob(".*.part")) == [] and list(tmp_path.parent.glob(".*.part")) == []


def test_config_init_where_it_cannot_write_is_a_config_error(cli: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli("config", "init", env={"LLMGW_HOME": str(blocker / "home")})
    line, hint = _one_error(result, 2)
    assert "cannot write" in line and "config init PATH" in hint
    result = cli("config", "init", str(tmp_path))
    line, _ = _one_error(result, 2)
    assert "is a directory" in line


def test_providers_status_with_a_malformed_url_is_exit_2(cli: Any) -> None:
    line, hint = _one_error(cli("providers", "status", "--url", "notaurl"), 2)
    assert "not an http(s) URL" in line and "http://127.0.0.1:8080" in hint


def test_serve_on_an_impossible_host_blames_the_host_not_the_port(cli: Any) -> None:
    line, hint = _one_error(cli("serve", "--host", "127.0.0.999", "--port", "0"), 2)
    assert "127.0.0.999" in line
    assert "--host 127.0.0.999 is not an address of this machine" in hint and "port" not in hint


def test_serve_on_a_busy_port_blames_the_port(cli: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _, hint = _one_error(cli("serve", "--host", "127.0.0.1", "--port", str(port)), 2)
    assert f"another process uses port {port}" in hint


def test_config_check_does_not_suggest_itself_and_has_no_pydantic_prefix(
    cli: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[providers]]\nname = "x"\nkind = "openai"\nbase_url = "ftp://h/v1"\n')
    line, hint = _one_error(cli("--config", str(cfg), "config", "check"), 2)
    assert "Value error, " not in line
    assert "config check" not in hint


@pytest.mark.parametrize("content", ["not a certificate\n", ""])
def test_config_check_rejects_the_ca_bundle_serve_rejects(
    cli: Any, tmp_path: Path, content: str
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(content)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[[providers]]\nname = "x"\nkind = "openai"\nbase_url = "https://h/v1"\n'
        f'ca_bundle = "{bundle}"\n'
    )
    line, hint = _one_error(cli("--config", str(cfg), "config", "check"), 2)
    assert "providers.x.ca_bundle" in line and "PEM" in hint
