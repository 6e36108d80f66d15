"""The admin commands with ``--url``/``--token`` (remote mode), against a real ``llmgw serve`` and
on its database: the same ``--json`` and exit codes in both modes; a non-admin key is exit 6
(AUTH-5, AUTH-6); a wrong URL is exit 9 with a hint; bad flags are exit 2 before any request; the
token is never printed; the audit log says ``cli``; remote mode loads no database code and local
mode no httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliResult, Upstream

LLMGW = str(Path(sys.executable).with_name("llmgw"))
FRESH = {"id", "prefix", "created_at", "key", "rotated_from", "email", "revoked_at", "user_id"}
"""Fields that differ between two objects created one in each mode."""

Run = Callable[..., CliResult]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOKEN = "llmgw_" + "T0k3n" * 8 + "abc"


def test_a_wrong_url_is_exit_9_naming_it_with_a_hint(cli: Run) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    res = cli("--url", url, "--token", TOKEN, "keys", "list")
    assert res.exit_code == 9
    assert res.stderr.splitlines() == [
        f"Error: cannot reach the llmgw server at {url}: connection refused",
        "hint: is `llmgw serve` running there? check --url / LLMGW_URL",
    ]
    assert TOKEN not in res.stderr + res.stdout
    res = cli("users", "list", env={"LLMGW_URL": url, "LLMGW_TOKEN": TOKEN})
    assert res.exit_code == 9 and TOKEN not in res.stderr


def test_a_url_that_is_not_http_or_no_token_is_exit_2(cli: Run) -> None:
    res = cli("--url", "localhost:8080", "--token", TOKEN, "users", "list")
    assert (res.exit_code, res.stderr.splitlines()[0]) == (2, "Error: --url is not an http(s) URL")
    res = cli("--url", "http://127.0.0.1:1", "audit")
    assert res.exit_code == 2 and "LLMGW_TOKEN" in res.stderr


def test_url_after_the_command_says_where_it_goes(cli: Run) -> None:
    res = cli("keys", "list", "--url", "http://127.0.0.1:1")
    assert res.exit_code == 2
    assert "--url and --token go before the command: llmgw --url URL keys list" in res.stderr


def test_commands_that_read_the_database_themselves_refuse_url(cli: Run, home: Path) -> None:
    """usage export would otherwise answer quietly from a local (empty) database."""
    for args in (("usage", "export", "--format", "csv"), ("usage", "rejected")):
        res = cli("--url", "http://127.0.0.1:1", "--token", TOKEN, *args)
        assert res.exit_code == 2, args
        assert "works on the database directly, not through --url" in res.stderr
    assert not list(home.glob("*.db"))


def test_remote_mode_never_loads_the_database_stack(tmp_path: Path) -> None:
    """keys list --url imports httpx, not SQLAlchemy; local mode never imports httpx."""
    code = (
        "import sys, json\n"
        "from llmgw.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    url = f"http://127.0.0.1:{_free_port()}"
    env = {**os.environ, "LLMGW_HOME": str(tmp_path)}
    remote = subprocess.run(
        [sys.executable, "-c", code, "--url", url, "--token", TOKEN, "keys", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    loaded = set(json.loads(remote.stderr.splitlines()[-1]))
    assert "httpx" in loaded and "sqlalchemy" not in loaded
    local = subprocess.run(
        [sys.executable, "-c", code, "keys", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "httpx" not in set(json.loads(local.stderr.splitlines()[-1]))


@dataclass
class Gateway:
    url: str
    config: Path
    token: str
    admin_email: str
    local: Run
    remote: Run
    user_token: str
    cli: Run


@pytest.fixture
def gateway(cli: Run, upstream: Upstream, home: Path, tmp_path: Path) -> Iterator[Gateway]:
    """A real ``llmgw serve`` on a SQLite file, an admin user with a key, a plain user with one."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n\n'
        "[usage]\nflush_interval = 0.05\n\n"
        '[[providers]]\nname = "openai"\nkind = "openai"\n'
        f'base_url = "{upstream.base_url}"\nmodels = ["gpt-4o-mini"]\n'
    )

    def local(*args: str) -> CliResult:
        return cli("--config", str(cfg), *args)

    assert (
        local("users", "create", "--email", "admin@example.com", "--role", "admin").exit_code == 0
    )
    assert local("users", "create", "--email", "plain@example.com").exit_code == 0
    made = local("keys", "create", "--name", "ops", "--user", "admin@example.com", "--json")
    token = json.loads(made.stdout)["key"]
    made = local("keys", "create", "--name", "app", "--user", "plain@example.com", "--json")
    user_token = json.loads(made.stdout)["key"]

    port = _free_port()
    env = {**os.environ, "LLMGW_HOME": str(home)}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [LLMGW, "--config", str(cfg), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.close()
            raise AssertionError((tmp_path / "serve.log").read_text())
        time.sleep(0.1)

    def remote(*args: str) -> CliResult:
        # No --config: remote mode needs no local settings or database.
        return cli(*args, env={"LLMGW_URL": url, "LLMGW_TOKEN": token})

    try:
        yield Gateway(url, cfg, token, "admin@example.com", local, remote, user_token, cli)
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _json(result: CliResult) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _both(gw: Gateway, *args: str) -> tuple[Any, Any]:
    return _json(gw.local(*args, "--json")), _json(gw.remote(*args, "--json"))


def _without(record: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


def _traffic(gw: Gateway, n: int = 3) -> None:
    for _ in range(n):
        resp = httpx.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {gw.user_token}"},
            json={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 10  # the usage writer flushes every 0.05 s
    while len(_json(gw.local("usage", "recent", "--json"))) < n:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _stable(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keys without ``last_used_at`` (each remote call uses the admin's key)."""
    return [_without(k, {"last_used_at"}) for k in keys]


def test_reads_give_the_same_json_in_both_modes(gateway: Gateway) -> None:
    gw = gateway
    _traffic(gw)
    local, remote = _both(gw, "keys", "list")
    assert _stable(remote) == _stable(local) and len(local) == 2
    local, remote = _both(gw, "keys", "list", "--all")
    assert _stable(remote) == _stable(local)
    app_key = next(k for k in local if k["name"] == "app")
    assert (
        _both(gw, "keys", "show", app_key["prefix"])[1]
        == _both(gw, "keys", "show", app_key["id"][:8])[0]
    )
    local, remote = _both(gw, "users", "list")
    assert remote == local and len(local) == 2
    local, remote = _both(gw, "users", "show", "plain@example.com")
    assert remote == local
    for by in ("day", "hour", "model", "provider", "key", "user", "status"):
        local, remote = _both(gw, "usage", "stats", "--by", by)
        assert _without(remote, {"since"}) == _without(local, {"since"}), by
        assert local["rows"] and sum(r["requests"] for r in local["rows"]) == 3
    local, remote = _both(gw, "usage", "stats", "--by", "model", "--user", "plain@example.com")
    assert _without(remote, {"since"}) == _without(local, {"since"})
    local, remote = _both(gw, "usage", "recent", "--limit", "10")
    assert remote == local and len(local) == 3  # the server's ring buffer = the newest rows
    local, remote = _both(gw, "usage", "recommend", "--since", "2026-11-01")
    assert remote == local and local["rows"] == []  # three requests cross no threshold
    local, remote = _both(gw, "audit")
    assert remote == local


def test_changes_give_the_same_json_in_both_modes_and_are_audited_as_cli(gateway: Gateway) -> None:
    gw = gateway
    create = ("keys", "create", "--name", "ci", "--user", "plain@example.com", "--rpm", "60")
    local, remote = _both(gw, *create)
    assert _without(remote, FRESH) == _without(local, FRESH)
    assert remote["key"].startswith("llmgw_") and remote["key"] != local["key"]
    for args in (
        ("keys", "update", "--rpm", "none", "--tpm", "5000", "--models", "openai/*"),
        ("keys", "rotate", "--yes"),
        ("keys", "revoke", "--yes"),
    ):
        old_local, old_remote = local, remote
        local = _json(gw.local(*args[:2], old_local["id"], *args[2:], "--json"))
        remote = _json(gw.remote(*args[:2], old_remote["id"], *args[2:], "--json"))
        assert _without(remote, FRESH) == _without(local, FRESH), args
    assert remote["status"] == "revoked"

    local, remote = (
        _json(gw.local("users", "create", "--email", "l@example.com", "--name", "N", "--json")),
        _json(gw.remote("users", "create", "--email", "r@example.com", "--name", "N", "--json")),
    )
    assert _without(remote, FRESH) == _without(local, FRESH)
    for verb in (("disable",), ("enable",), ("set-role",)):
        role = ("admin",) if verb == ("set-role",) else ()
        local = _json(gw.local("users", *verb, "l@example.com", *role, "--json"))
        remote = _json(gw.remote("users", *verb, "r@example.com", *role, "--json"))
        assert _without(remote, FRESH) == _without(local, FRESH), verb

    entries = _json(gw.local("audit", "--actor", gw.admin_email, "--json"))
    actions = sorted(e["action"] for e in entries)
    assert actions == sorted(
        [
            "keys.create",
            "keys.update",
            "keys.rotate",
            "keys.revoke",
            "users.create",
            "users.disable",
            "users.enable",
            "users.set_role",
        ]
    )
    assert {e["source"] for e in entries} == {"cli"}
    assert {e["actor_kind"] for e in entries} == {"key"}
    assert all(e["remote_addr"] == "127.0.0.1" for e in entries)
    text = json.dumps(entries)
    assert gw.token not in text and gw.user_token not in text


def test_providers_status_remote_is_the_routers_live_state(gateway: Gateway) -> None:
    """The one command whose answer differs by design: the server's router, not the table."""
    gw = gateway
    _traffic(gw, 1)
    remote = _json(gw.remote("providers", "status", "--json"))
    assert remote and all(r["live"] is True for r in remote)
    assert {r["provider"] for r in remote} == {"openai"}
    local = _json(gw.local("providers", "status", "--json"))
    assert all(r["live"] is False for r in local)
    row = remote[0]
    assert row["requests"] == 1 and row["requests_per_min"] == 1 and row["in_flight"] == 0
    assert len(row["history"]) == 120 and row["history_seconds"] == 5.0
    assert sum(b["requests"] for b in row["history"]) == 1
    table = gw.remote("providers", "status")
    assert table.exit_code == 0, table.stderr
    assert "openai" in table.stdout and "breaker" in table.stdout and "req/min" in table.stdout


def test_providers_status_url_of_earlier_versions_still_works_through_the_admin_api(
    gateway: Gateway,
) -> None:
    """``providers status --url URL --api-key KEY`` (before the global options) is still
    honoured, with a note pointing to ``llmgw --url URL --token KEY providers status``; it asks
    /admin/v1/providers now, so it needs an admin's key (docs/changelog.md)."""
    gw = gateway
    _traffic(gw, 1)
    old = gw.cli("providers", "status", "--url", gw.url, "--api-key", gw.token, "--json")
    assert old.exit_code == 0, old.stderr
    assert "deprecated" in old.stderr and "llmgw --url URL --token KEY" in old.stderr
    new = _json(gw.remote("providers", "status", "--json"))
    strip = {"history", "last_ok_at", "latency_ms", "requests", "requests_per_min"}
    assert [_without(r, strip) for r in json.loads(old.stdout)] == [_without(r, strip) for r in new]
    env = gw.cli(
        "providers", "status", "--url", gw.url, env={"LLMGW_API_KEY": gw.user_token}
    )  # a plain user's key: refused like every admin command
    assert env.exit_code == 6 and gw.user_token not in env.stderr


def test_a_non_admin_key_is_exit_6_with_one_error_line(gateway: Gateway) -> None:
    """AUTH-5, AUTH-6: a valid key whose user is not an admin sees nothing, at the CLI too."""
    gw = gateway
    before = _json(gw.local("keys", "list", "--all", "--json"))
    users, audit = _json(gw.local("users", "list", "--json")), _json(gw.local("audit", "--json"))
    target = before[0]["id"]
    for args in (
        ("keys", "list"),
        ("keys", "show", target),
        ("keys", "create", "--name", "evil"),
        ("keys", "update", target, "--rpm", "1"),
        ("keys", "revoke", target, "--yes"),
        ("keys", "rotate", target, "--yes"),
        ("users", "list"),
        ("users", "show", "admin@example.com"),
        ("users", "create", "--email", "evil@example.com"),
        ("users", "disable", "admin@example.com"),
        ("users", "enable", "admin@example.com"),
        ("users", "set-role", "plain@example.com", "admin"),
        ("usage", "stats"),
        ("usage", "recent"),
        ("providers", "status"),
        ("audit",),
    ):
        res = gw.cli("--url", gw.url, "--token", gw.user_token, *args)
        assert res.exit_code == 6, (args, res.stderr)
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert lines[0].startswith("Error: ") and len(lines) <= 2, res.stderr
        assert gw.user_token not in res.stderr
    # nothing minted, edited, revoked or rotated; no user touched; nothing in the audit log
    assert _stable(_json(gw.local("keys", "list", "--all", "--json"))) == _stable(before)
    assert _json(gw.local("users", "list", "--json")) == users
    assert _json(gw.local("audit", "--json")) == audit


def test_an_unknown_token_is_exit_6_and_never_printed(gateway: Gateway) -> None:
    gw = gateway
    bogus = "llmgw_" + "Z" * 43
    res = gw.cli("--url", gw.url, "--token", bogus, "--debug", "keys", "list")
    assert res.exit_code == 6
    assert bogus not in res.stderr + res.stdout


def test_remote_mode_touches_no_local_database(gateway: Gateway, home: Path) -> None:
    gw = gateway
    assert gw.remote("keys", "list").exit_code == 0
    assert gw.remote("usage", "stats").exit_code == 0
    assert not list(home.glob("*.db"))


def test_text_output_is_the_same_in_both_modes(gateway: Gateway) -> None:
    """People see the same tables whichever way the command went (piped: 200 columns)."""
    gw = gateway
    _traffic(gw, 2)
    for args in (
        ("users", "list"),
        ("users", "show", "plain@example.com"),
        ("usage", "stats", "--by", "model"),
        ("usage", "stats", "--by", "key"),
        ("usage", "recent"),
        ("audit",),
    ):
        local, remote = gw.local(*args), gw.remote(*args)
        assert (remote.exit_code, remote.stdout) == (local.exit_code, local.stdout), args
        assert local.exit_code == 0 and local.stdout.strip(), args


def test_prices_and_costs_are_right_by_default_in_both_modes(gateway: Gateway) -> None:
    """No price in the config: gpt-4o-mini is priced by the bundled table (USD), the same table
    locally and from the server; the traffic's cost is that price times its tokens, in USD."""
    gw = gateway
    local, remote = _both(gw, "providers", "prices")
    assert remote == local
    row = next(r for r in local if r["model"] == "gpt-4o-mini")
    assert (row["source"], row["currency"], row["input"], row["output"]) == (
        "bundled",
        "USD",
        "0.15",
        "0.6",
    )
    assert row["as_of"] and row["reference"] and row["table_version"]
    assert _json(gw.remote("providers", "prices", "openai", "--json")) == local
    missing = gw.remote("providers", "prices", "nope", "--json")
    assert missing.exit_code != 0 and missing.stderr.startswith("Error:")
    _traffic(gw)
    local, remote = _both(gw, "usage", "stats", "--by", "model")
    assert _without(remote, {"since"}) == _without(local, {"since"})
    (stats,) = local["rows"]
    expected = (
        Decimal(stats["prompt_tokens"]) * Decimal("0.15")
        + Decimal(stats["completion_tokens"]) * Decimal("0.6")
    ) / 1_000_000
    assert stats["currency"] == "USD" and stats["costs"] == {"USD": stats["cost"]}
    assert Decimal(stats["cost"]) == expected > 0
    shown = gw.local("usage", "stats", "--by", "model")
    assert f"{expected:.6f} USD" in shown.stdout
    # rankings read the same statistics in both modes
    local, remote = _both(gw, "usage", "top", "models")
    assert _without(remote, {"since"}) == _without(local, {"since"})
    assert [(r["currency"], r["model"]) for r in local["rows"]] == [("USD", "openai/gpt-4o-mini")]
    local, remote = _both(gw, "usage", "top", "users", "--by", "requests", "--until", "2099-01-01")
    assert remote["rows"] == local["rows"] and local["rows"][0]["requests"] == 3
    local, remote = _both(gw, "usage", "forecast")
    assert _without(remote, {"since"}) == _without(local, {"since"})
    assert [f["currency"] for f in local["rows"]] == ["USD"]
    local, remote = _both(gw, "usage", "patterns", "--since", "1d")
    assert _without(remote, {"since"}) == _without(local, {"since"}) and local["requests"] == 3


def test_budgets_and_quotas_local_and_remote_give_the_same_records(gateway: Gateway) -> None:
    """``llmgw budgets`` and ``llmgw quotas`` in both modes: set (local), then list and show in
    both with identical ``--json``; a remote set replaces it; the server's ``402`` comes from
    it after the spend (issue 13). Bad input is exit 2 before any change."""
    gw = gateway
    made = _json(
        gw.local(
            "budgets", "set", "0.5", "--user", "plain@example.com", "--period", "day",
            "--currency", "USD", "--hard-stop", "--json",
        )
    )  # fmt: skip
    assert made["scope"] == "user" and made["subject"] == "plain@example.com"
    assert (made["amount"], made["currency"], made["thresholds"]) == (
        "0.5000000000",
        "USD",
        [80, 100],
    )
    local, remote = _both(gw, "budgets", "list")
    assert local == remote and [b["id"] for b in local] == [made["id"]]
    shown_l, shown_r = _both(gw, "budgets", "show", made["id"][:8])
    assert shown_l == shown_r and shown_l["period_start"].endswith("T00:00:00+00:00")
    again = _json(
        gw.remote(
            "budgets", "set", "1000", "--user", "plain@example.com", "--period", "day",
            "--currency", "USD", "--thresholds", "50,90", "--json",
        )
    )  # fmt: skip
    assert again["id"] == made["id"] and again["thresholds"] == [50, 90] and not again["hard_stop"]
    bad = gw.remote("budgets", "set", "0", "--user", "plain@example.com", "--currency", "USD")
    assert bad.exit_code == 2 and "invalid amount" in bad.stderr
    bad = gw.local("budgets", "set", "3", "--currency", "USD")
    assert bad.exit_code == 2 and "exactly one of --key and --user" in bad.stderr
    quota = _json(gw.remote("quotas", "set", "--user", "plain@example.com", "--rpm", "7", "--json"))
    assert (quota["model"], quota["rpm"], quota["tpm"]) == (None, 7, None)
    ql, qr = _both(gw, "quotas", "list")
    assert ql == qr == [quota]
    bad = gw.local("quotas", "set", "--key", "ops", "--rpm", "1")
    assert bad.exit_code == 2 and "names a model version" in bad.stderr
    gone = _json(gw.remote("quotas", "delete", quota["id"][:8], "--yes", "--json"))
    assert gone["id"] == quota["id"] and _json(gw.local("quotas", "list", "--json")) == []
    gone = _json(gw.local("budgets", "delete", made["id"][:8], "--yes", "--json"))
    assert gone["id"] == made["id"] and _json(gw.remote("budgets", "list", "--json")) == []
    actions = [a["action"] for a in _json(gw.local("audit", "--json"))]
    assert {"budgets.set", "budgets.delete", "quotas.set", "quotas.delete"} <= set(actions)


def test_a_key_name_works_remotely_as_locally_and_the_server_resolves_it(gateway: Gateway) -> None:
    """``--key NAME`` and ``keys show NAME`` through the admin API: the server resolves the name
    with the same resolver (one live key of the name; several refused, listing ids), also names
    a URL path segment cannot hold as they are."""
    gw = gateway
    _traffic(gw, 2)  # as the key named "app"
    local, remote = _both(gw, "usage", "stats", "--by", "key", "--key", "app")
    assert _without(remote, {"since"}) == _without(local, {"since"})
    assert sum(r["requests"] for r in local["rows"]) == 2
    app = _json(gw.local("keys", "show", "app", "--json"))
    assert _stable([_json(gw.remote("keys", "show", "app", "--json"))]) == _stable([app])
    budget = _json(gw.remote("budgets", "set", "9", "--key", "app", "--currency", "USD", "--json"))
    assert (budget["scope"], budget["subject_id"]) == ("key", app["id"])
    for name in ("team/ci bot", "ci-bot?x=1#y", "100%", "ключ", ".."):
        made = _json(gw.remote("keys", "create", "--name", name, "--json"))
        shown = _json(gw.remote("keys", "update", name, "--rpm", "5", "--json"))
        assert (shown["id"], shown["rpm"]) == (made["id"], 5), name
        rotated = _json(gw.remote("keys", "rotate", name, "--yes", "--json"))
        assert rotated["rotated_from"] == made["id"], name
        revoked = _json(gw.remote("keys", "revoke", name, "--yes", "--json"))
        assert revoked["id"] == rotated["id"] and revoked["status"] == "revoked", name
    second = _json(gw.local("keys", "create", "--name", "app", "--json"))
    # The same message, hint line and exit code in both modes (the admin API's error envelope
    # carries the error's hint).
    printed: dict[str, list[str]] = {}
    for mode, run in (("local", gw.local), ("remote", gw.remote)):
        res = run("keys", "show", "app")
        assert (res.exit_code, res.stdout) == (2, "")
        lines = res.stderr.splitlines()
        assert lines[0] == (
            f"Error: 'app' matches 2 keys: {app['id'][:8]} ({app['prefix']}), "
            f"{second['id'][:8]} ({second['prefix']})"
        )
        assert len(lines) == 2 and lines[1].startswith("hint: "), lines
        res = run("budgets", "set", "1", "--key", "nobody", "--currency", "USD")
        assert (res.exit_code, res.stdout) == (4, "")
        unknown = res.stderr.splitlines()
        assert unknown[0] == "Error: no API key matches 'nobody'"
        assert len(unknown) == 2 and unknown[1].startswith("hint: "), unknown
        assert second["key"] not in res.stderr
        printed[mode] = lines + unknown
    assert printed["remote"] == printed["local"]


def test_a_short_user_id_or_name_works_remotely_as_locally_and_the_server_resolves_it(
    gateway: Gateway,
) -> None:
    """The 8-character id ``users list`` shows, and a display name, through the admin API: the
    server resolves them with the same resolver (``find_user``), also names a URL path segment
    cannot hold as they are; an ambiguous or unknown user is the same error in both modes."""
    gw = gateway
    _traffic(gw, 2)  # as plain@example.com
    plain = _json(gw.local("users", "show", "plain@example.com", "--json"))
    short = plain["id"][:8]
    assert _both(gw, "users", "show", short) == (plain, plain)
    local, remote = _both(gw, "usage", "stats", "--by", "user", "--user", short)
    assert _without(remote, {"since"}) == _without(local, {"since"})
    assert sum(r["requests"] for r in local["rows"]) == 2
    budget = _json(gw.remote("budgets", "set", "9", "--user", short, "--currency", "USD", "--json"))
    assert (budget["scope"], budget["subject_id"]) == ("user", plain["id"])
    # A key's owner too (keys create --user), in both modes.
    for mode, run in (("local", gw.local), ("remote", gw.remote)):
        owned = _json(run("keys", "create", "--name", f"by-id-{mode}", "--user", short, "--json"))
        assert owned["user"] == "plain@example.com", mode
    for name in ("team/ops bot", "ops?x=1#y", "100%", "Аня", ".."):
        made = _json(
            gw.remote(
                "users",
                "create",
                "--email",
                f"u{len(name)}{ord(name[0])}@x.io",
                "--name",
                name,
                "--json",
            )
        )
        assert _json(gw.remote("users", "show", name, "--json"))["id"] == made["id"], name
        assert _json(gw.remote("users", "disable", name, "--json"))["status"] == "disabled", name
        assert _json(gw.remote("users", "enable", made["id"][:8], "--json"))["id"] == made["id"]
        assert _json(gw.remote("users", "set-role", name, "admin", "--json"))["role"] == "admin"
    other = _json(
        gw.local("users", "create", "--email", "twin@example.com", "--name", "Ops", "--json")
    )
    again = _json(
        gw.local("users", "create", "--email", "twin2@example.com", "--name", "Ops", "--json")
    )
    first, second = sorted([other, again], key=lambda u: (u["created_at"], u["id"]))
    for run in (gw.local, gw.remote):
        res = run("users", "show", "Ops")
        assert (res.exit_code, res.stdout) == (2, "")
        assert res.stderr.splitlines()[0] == (
            f"Error: 'Ops' matches 2 users: {first['id'][:8]} ({first['email']}), "
            f"{second['id'][:8]} ({second['email']})"
        )
        res = run("quotas", "set", "--user", "nobody", "--rpm", "1")
        assert (res.exit_code, res.stdout) == (4, "")
        assert res.stderr.splitlines()[0] == "Error: no user matches 'nobody'"
