"""Naming a key the way a person would (issue 8 item 16): the whole secret, too few characters of
an id, its name (the one live key of that name; two are refused, listing their ids), and
``--models`` entries that nothing offers (a warning, or a refusal with ``--strict``)."""

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


def test_every_key_option_takes_the_name_given_at_create(cli: Any) -> None:
    """``keys create --name ci-bot`` and then ``--key ci-bot``, as an operator types it."""
    made = json.loads(cli("keys", "create", "--name", "ci-bot", "--json").stdout)
    shown = cli("keys", "show", "ci-bot", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == made["id"]
    r = cli("keys", "update", "ci-bot", "--rpm", "30", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rpm"] == 30
    r = cli("budgets", "set", "10", "--key", "ci-bot", "--currency", "RUB", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["subject_id"] == made["id"]
    r = cli("quotas", "set", "--key", "ci-bot", "--model", "local/gpt-4o-mini", "--tpm", "9")
    assert r.exit_code == 0, r.stderr
    for args in (("usage", "stats", "--by", "key"), ("usage", "forecast")):
        r = cli(*args, "--key", "ci-bot", "--json")
        assert r.exit_code == 0, (args, r.stderr)
    rotated = cli("keys", "rotate", "ci-bot", "--yes", "--json")
    assert rotated.exit_code == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["rotated_from"] == made["id"]
    # the name now means the new (live) key, not the revoked one it replaced
    assert json.loads(cli("keys", "show", "ci-bot", "--json").stdout)["id"] == new["id"]
    r = cli("keys", "revoke", "ci-bot", "--yes")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"revoked key ci-bot ({new['prefix']})")
    for out in (shown, rotated, r):
        assert made["key"] not in out.stdout + out.stderr


def test_a_name_of_two_live_keys_is_refused_listing_both_ids(cli: Any) -> None:
    a = _create(cli, "--rpm", "1")
    b = _create(cli, "--rpm", "2")  # both named "k"
    for args in (
        ("keys", "show", "k"),
        ("keys", "revoke", "k", "--yes"),
        ("budgets", "set", "5", "--key", "k", "--currency", "RUB"),
        ("usage", "stats", "--key", "k"),
    ):
        r = cli(*args)
        assert (r.exit_code, r.stdout) == (2, ""), args
        error, hint = r.stderr.splitlines()
        assert error == (
            f"Error: 'k' matches 2 keys: {a['id'][:8]} ({a['prefix']}), "
            f"{b['id'][:8]} ({b['prefix']})"
        )
        assert hint.startswith("hint: give the id (8+ characters) or the prefix")
        assert a["key"] not in r.stderr and b["key"] not in r.stderr
    keys = json.loads(cli("keys", "list", "--json").stdout)
    assert [k["status"] for k in keys] == ["active", "active"]  # nothing was revoked
    assert cli("keys", "revoke", a["id"][:8], "--yes").exit_code == 0
    assert json.loads(cli("keys", "show", "k", "--json").stdout)["id"] == b["id"]


def test_an_unknown_key_is_exit_4_with_one_error_line_and_a_hint(cli: Any) -> None:
    made = _create(cli)
    for args in (
        ("keys", "show", "ci-bot"),
        ("budgets", "set", "5", "--key", "ci-bot", "--currency", "RUB"),
        ("usage", "forecast", "--key", "ci-bot"),
    ):
        r = cli(*args)
        assert (r.exit_code, r.stdout) == (4, ""), args
        assert r.stderr.splitlines() == [
            "Error: no API key matches 'ci-bot'",
            "hint: give its name, id (8+ characters), prefix (llmgw_ + 6) or the whole secret; "
            "`llmgw keys list --all` shows them",
        ]
    typo = made["key"][:20]  # a secret cut short is never echoed past its prefix
    r = cli("keys", "show", typo)
    assert r.exit_code == 4 and typo not in r.stderr and made["prefix"] in r.stderr
