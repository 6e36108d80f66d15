"""Every command documents itself; docs/cli.md and completions/* match the live CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from llmgw.cli.app import COMMANDS as LAZY
from llmgw.cli.app import app
from llmgw.cli.lazy import subcommands
from llmgw.cli.reference import COMPLETIONS, exit_codes

ROOT = Path(__file__).resolve().parents[1]


def _walk(cmd: Any, path: str = "llmgw") -> Iterator[tuple[str, Any]]:
    yield path, cmd
    for name, sub in subcommands(cmd):
        if not getattr(sub, "hidden", False):
            yield from _walk(sub, f"{path} {name}")


COMMANDS = list(_walk(typer.main.get_command(app)))


def test_the_tree_has_the_foundation_commands() -> None:
    paths = {p for p, _ in COMMANDS}
    for expected in (
        "llmgw config show",
        "llmgw config check",
        "llmgw config init",
        "llmgw db upgrade",
        "llmgw db current",
        "llmgw db downgrade",
        "llmgw keys create",
        "llmgw keys list",
        "llmgw keys show",
        "llmgw keys revoke",
        "llmgw keys rotate",
        "llmgw users create",
        "llmgw users list",
        "llmgw users disable",
    ):
        assert expected in paths


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_and_option_has_help(path: str, cmd: Any) -> None:
    text = (cmd.help or cmd.short_help or "").strip()
    assert text, f"`{path}` has no help text (give the function a docstring)"
    for param in cmd.params:
        if param.param_type_name == "option" and "--help" not in param.opts:
            assert (param.help or "").strip(), f"`{path} {param.opts[0]}` has no help"


@pytest.mark.parametrize("name", list(LAZY))
def test_root_help_lists_each_command_with_its_own_help(name: str) -> None:
    """`llmgw --help` shows these strings without importing the commands: they must not drift."""
    cmd = LAZY[name].load(name)
    assert cmd.name == name
    assert LAZY[name].help == (cmd.help or "").strip().split("\n\n")[0].replace("\n", " ")


@pytest.mark.parametrize(
    ("path", "cmd"),
    [(p, c) for p, c in COMMANDS if p.rsplit(" ", 1)[-1] == "list"],
    ids=[p for p, _ in COMMANDS if p.rsplit(" ", 1)[-1] == "list"],
)
def test_every_listing_command_has_json(path: str, cmd: Any) -> None:
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--json" in opts, f"`{path}` lists things but has no --json"


def test_exit_codes_are_documented() -> None:
    codes = dict(exit_codes())
    assert set(codes) >= {0, 1, 2, 3, 4, 5, 6, 130}
    from llmgw import errors

    for name in errors.__all__:
        assert getattr(errors, name).exit_code in codes, name


def _reference(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmgw.cli.reference", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_generated_docs_and_completions_are_current() -> None:
    proc = _reference("--check", "--root", str(ROOT))
    assert proc.returncode == 0, (
        f"{proc.stderr}\nrun `python -m llmgw.cli.reference` and commit docs/cli.md and completions/"
    )
    text = (ROOT / "docs" / "cli.md").read_text()
    for path, _ in COMMANDS:
        assert f"### `{path}`" in text, path


def test_generator_writes_then_check_notices_a_hand_edit(tmp_path: Path) -> None:
    made = _reference("--root", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert _reference("--check", "--root", str(tmp_path)).returncode == 0
    fish = tmp_path / "completions" / "llmgw.fish"
    fish.write_text(fish.read_text() + "# edited by hand\n")
    proc = _reference("--check", "--root", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == "out of date: completions/llmgw.fish"
    assert "docs/cli.md" not in proc.stderr


def test_completion_scripts_call_back_into_llmgw() -> None:
    for shell, name in COMPLETIONS.items():
        text = (ROOT / "completions" / name).read_text()
        assert "_LLMGW_COMPLETE=complete_" + shell in text, name


def test_completion_answers_for_subcommands(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "llmgw"
    proc = subprocess.run(
        [str(script)],
        env={
            "PATH": "/usr/bin:/bin",
            "LLMGW_HOME": str(tmp_path),
            "COMP_WORDS": "llmgw keys r",
            "COMP_CWORD": "2",
            "_LLMGW_COMPLETE": "complete_bash",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {"revoke", "rotate"}


def test_config_md_lists_every_setting() -> None:
    from llmgw.config import Settings

    text = (ROOT / "docs" / "config.md").read_text()
    for name, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub is None:
            assert any(f in text for f in (f"| `{name}` |", f"`[{name}]`", f"`[[{name}]]`")), name
        else:
            assert f"### `[{name}]`" in text, name
            for leaf in sub:
                assert f"`LLMGW_{name.upper()}__{leaf.upper()}`" in text, (name, leaf)


def _anchors(path: Path) -> set[str]:
    """The #fragments GitHub makes of a Markdown file's headings (code blocks skipped)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fence = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        mark = re.match(r"\s*(`{3,}|~{3,})", line)
        if mark:
            fence = "" if fence and mark.group(1).startswith(fence) else fence or mark.group(1)
            continue
        heading = re.match(r"#{1,6}\s+(.*)$", line)
        if fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_every_relative_link_in_the_docs_leads_somewhere() -> None:
    """README.md and docs/*.md: each relative link's file exists, and its #anchor is a heading."""
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists() or (
                anchor and linked.suffix == ".md" and anchor not in _anchors(linked)
            ):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_docs_anchor_named_in_code_and_deploy_files_is_a_heading() -> None:
    """Comments, help and pages that point at ``docs/X.md#anchor`` (src, server, tui, deploy)."""
    broken = []
    for folder in ("src", "server", "tui", "deploy"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".yaml", ".yml", ".toml", ".sh", ".html", ".tpl"}:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for name, anchor in re.findall(r"\b([a-z_-]+\.md)#([a-z0-9-]+)", text):
                doc = ROOT / "docs" / name
                if not doc.exists() or anchor not in _anchors(doc):
                    broken.append(f"{path.relative_to(ROOT)}: {name}#{anchor}")
    assert broken == []
