"""Help reads right in a terminal (issue 8 item 14): literal brackets, no ``<bool>`` on flags,
``--version`` is a flag, and a group without a subcommand prints its help and no ``Error:`` line."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from llmgw.cli.app import app
from llmgw.cli.lazy import subcommands


def _paths(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, sub in subcommands(cmd):
        out += _paths(sub, (*path, name))
    return out


ALL = _paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) or "llmgw" for p in ALL])
def test_help_shows_no_bool_metavar_on_flags(cli: Any, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert "Usage: llmgw" in result.stdout


def test_emulate_help_keeps_the_literal_markers(cli: Any) -> None:
    text = " ".join(cli("emulate", "yandexgpt", "--help").stdout.split())
    assert "put [[rewrite]] or [[content_filter]] in a message" in text


@pytest.mark.parametrize("args", [["--version", "true"], ["--version", "keys", "list"]])
def test_version_is_a_flag_without_value(cli: Any, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0].startswith("Error: --version takes no value")


def test_version_alone_prints_the_version(cli: Any) -> None:
    from llmgw import __version__

    for args in (["--version"], ["--debug", "--version"]):
        result = cli(*args)
        assert (result.exit_code, result.stdout) == (0, f"llmgw {__version__}\n")


@pytest.mark.parametrize("group", [[], ["keys"], ["db"], ["usage"], ["providers"]])
def test_group_without_subcommand_prints_help_without_an_empty_error(
    cli: Any, group: list[str]
) -> None:
    result = cli(*group)
    assert result.exit_code == 2
    assert "Error" not in result.stderr + result.stdout
    assert f"Usage: {' '.join(['llmgw', *group])} [OPTIONS] COMMAND" in result.stderr
