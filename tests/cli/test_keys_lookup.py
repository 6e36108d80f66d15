"""Naming a key the way a person would (issue 8 item 16): the whole secret, too few characters of
an id, and ``--models`` entries that nothing offers (a warning, or a refusal with ``--strict``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG = """
[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9001/v1"
models = ["gpt-4o-mini"]

[aliases]
chat-default = ["local/gpt-4o-mini"]
"""


def _create(cli: Any, *args: str) -> dict[str, Any]:
    r = cli("keys", "create", "--name", "k", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_show_finds_a_key_by_its_whole_secret_and_never_prints_it(cli: Any) -> None:
    made = _create(cli)
    for args in (("keys", "show", made["key"]), ("keys", "show", made["key"], "--json")):
        r = cli(*args)
        assert r.exit_code == 0, r.stderr
        assert made["id"] in r.stdout
        assert made["key"] not in r.stdout and made["key"][12:] not in r.stdout


def test_a_secret_with_a_known_prefix_but_wrong_tail_is_not_found(cli: Any) -> None:
    made = _create(cli)
    wrong = made["key"][:-2] + ("xy" if not made["key"].endswith("xy") else "zz")
    r = cli("keys", "show", wrong)
    assert r.exit_code == 4 and r.stdout == ""
    assert wrong[12:] not in r.stderr and made["prefix"] in r.stderr


def test_too_short_an_id_says_eight_characters_are_needed(cli: Any) -> None:
    made = _create(cli)
    r = cli("keys", "show", made["id"][:6])
    assert r.exit_code == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith("Error: ") and "at least 8 characters" in first
    assert cli("keys", "show", made["id"][:8]).exit_code == 0


def test_models_nothing_offers_warn_and_strict_refuses(cli: Any, home: Path) -> None:
    cfg = home / "cfg.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(CONFIG, encoding="utf-8")
    good = "local/gpt-4o-mini,chat-default,local/*,gpt-4o-mini"
    r = cli("--config", str(cfg), "keys", "create", "--name", "ok", "--models", good, "--strict")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""

    bad = "local/gpt-4o-mini,chat-defualt,nope/*"
    r = cli("--config", str(cfg), "keys", "create", "--name", "w", "--models", bad, "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["models"] == bad.split(",")
    assert r.stderr.startswith("warning: --models chat-defualt, nope/*: no configured provider")

    r = cli("--config", str(cfg), "keys", "create", "--name", "s", "--models", bad, "--strict")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("Error: --models chat-defualt, nope/*: no configured provider")
    names = {
        k["name"] for k in json.loads(cli("--config", str(cfg), "keys", "list", "--json").stdout)
    }
    assert names == {"ok", "w"}
