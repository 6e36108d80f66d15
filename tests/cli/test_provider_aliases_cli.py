"""``llmgw providers aliases list|add|edit|remove`` on a local database (SQLite and PostgreSQL):
stored aliases beside the config file's read-only ones, which win a name clash; clear errors;
every change audited (issue 16 part 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from llmgw.providers.stored_aliases import AliasStore
from llmgw.storage.provider_tables import AliasRow
from llmgw.storage.tables import utcnow
from tests.conftest import CliResult


@pytest.fixture
def run(cli: Callable[..., CliResult], home: Path, db_url: str) -> Callable[..., CliResult]:
    """The CLI with a config file: provider ``giga`` (model GigaChat), alias ``fast``."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        '[[providers]]\nname = "giga"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'models = ["GigaChat"]\n\n'
        '[aliases]\nfast = ["giga/GigaChat"]\n'
    )
    return lambda *args: cli("--config", str(cfg), *args)


def test_stored_aliases_beside_the_config_files(run: Callable[..., CliResult]) -> None:
    r = run("providers", "aliases", "add", "smart", "giga/GigaChat", "yandex/lite=3", "--json")
    assert r.exit_code == 0, r.stderr
    added = json.loads(r.stdout)
    assert added["targets"] == ["giga/GigaChat", {"target": "yandex/lite", "weight": 3.0}]
    assert (added["source"], added["revision"], added["unresolved"]) == (
        "database", 1, ["yandex/lite"],  # no provider yandex (yet)
    )  # fmt: skip
    r = run("providers", "aliases", "add", "smart", "giga/GigaChat")
    assert r.exit_code == 5 and "exists" in r.stderr
    rows = json.loads(run("providers", "aliases", "list", "--json").stdout)
    assert [(a["name"], a["source"]) for a in rows] == [("fast", "config"), ("smart", "database")]
    r = run("providers", "aliases", "edit", "smart", "giga/GigaChat")
    assert r.exit_code == 0 and "changed alias smart -> giga/GigaChat" in r.stdout
    assert "warning" not in r.stderr  # every target resolves now
    table = run("providers", "aliases", "list").stdout
    # `providers list` shows the stored provider and alias after the config file's.
    assert run("providers", "add", "vllm", "--kind", "openai", "-m", "llama",
               "--base-url", "http://127.0.0.1:8/v1").exit_code == 0  # fmt: skip
    listed = json.loads(run("providers", "list", "--json").stdout)
    assert [(p["name"], p["source"]) for p in listed["providers"]] == [
        ("giga", "config"), ("vllm", "database"),
    ]  # fmt: skip
    assert listed["providers"][1]["credential"] == "sealed in the database"
    assert listed["aliases"] == {"fast": ["giga/GigaChat"], "smart": ["giga/GigaChat"]}
    assert "fast" in table and "config" in table and "database" in table
    # The config file's alias is read-only and wins.
    for args in (("add", "fast", "giga/GigaChat"), ("edit", "fast", "giga/GigaChat"),
                 ("remove", "fast", "--yes")):  # fmt: skip
        r = run("providers", "aliases", *args)
        assert r.exit_code == 5 and "config file" in r.stderr and "wins" in r.stderr
    r = run("providers", "aliases", "remove", "smart")
    assert r.exit_code == 2 and "--yes" in r.stderr  # not a terminal: refused, nothing changed
    assert run("providers", "aliases", "remove", "smart", "--yes").exit_code == 0
    r = run("providers", "aliases", "remove", "smart", "--yes")
    assert r.exit_code == 4 and "no stored alias 'smart'" in r.stderr
    audit = json.loads(run("audit", "--json", "--action", "aliases.*").stdout)
    assert sorted(a["action"] for a in audit) == ["aliases.add", "aliases.edit", "aliases.remove"]


BAD = [
    (("a/b", "giga/GigaChat"), "invalid alias name"),
    (("ok", "giga/GigaChat=x"), "invalid weight"),
    (("ok", "giga/GigaChat=0"), "greater than 0"),
    # inf was stored as JSON Infinity (PostgreSQL refuses it) and read back as a null weight
    (("ok", "giga/GigaChat=inf"), "finite number"),
    (("ok", "giga/GigaChat=nan"), "finite number"),
    (("ok", "giga/GigaChat", "giga/GigaChat"), "listed twice"),
    (("ok", "bad name"), "not a model name"),
    (("ok", "ok"), "cannot name itself"),
]


def test_bad_aliases_are_refused_with_the_reason(cli: Callable[..., CliResult]) -> None:
    for args, says in BAD:
        r = cli("providers", "aliases", "add", *args)
        assert r.exit_code == 2 and says in r.stderr, (args, r.stdout, r.stderr)
    assert json.loads(cli("providers", "aliases", "list", "--json").stdout) == []


def test_a_stored_alias_no_longer_valid_is_skipped_not_fatal(
    run: Callable[..., CliResult], engine: Engine
) -> None:
    """A row stored before weights had to be finite (read back as a null weight) is skipped
    with a warning: the other stored aliases and providers still apply, and the CLI still
    lists them (a ValidationError stopped both)."""
    assert run("providers", "aliases", "add", "good", "giga/GigaChat").exit_code == 0
    with engine.begin() as conn:
        conn.execute(
            sa.insert(AliasRow.__table__).values(  # type: ignore[attr-defined]
                name="broken", targets=[{"target": "giga/GigaChat", "weight": None}],
                revision=1, created_at=utcnow(), updated_at=utcnow(),
            )
        )  # fmt: skip
    assert list(AliasStore(engine).as_config()) == ["good"]
    r = run("providers", "list", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["aliases"] == {"fast": ["giga/GigaChat"], "good": ["giga/GigaChat"]}
