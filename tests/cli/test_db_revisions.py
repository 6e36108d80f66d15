"""`llmgw db` answers bad revisions and unusable data directories with one clear line."""

from __future__ import annotations


def test_unknown_revision_is_a_usage_error(cli) -> None:
    r = cli("db", "downgrade", "nosuchrev")
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: cannot migrate to revision 'nosuchrev'")
    assert "Traceback" not in r.stderr


def test_unwritable_home_is_a_config_error(cli, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = cli("keys", "list", env={"LLMGW_HOME": str(blocker / "home")})
    assert r.exit_code == 2
    assert "cannot create the data directory" in r.stderr
    assert "Traceback" not in r.stderr
