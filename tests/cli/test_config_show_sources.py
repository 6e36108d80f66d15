"""``config show`` says ``default`` for what the file did not set and leaves out provider settings
that the provider's kind does not read (issue 8 item 13); prices are plain decimals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG = """
[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:9001/v1"
connect_timeout = 3

[providers.prices."gpt-4o-mini"]
input = 0.0000001
output = 0.6

[[providers]]
name = "giga"
kind = "gigachat"
scope = "GIGACHAT_API_B2B"
"""


def test_defaults_say_default_and_other_kinds_fields_are_hidden(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    r = cli("--config", str(cfg), "config", "show", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {s["key"]: s for s in json.loads(r.stdout)["settings"]}
    assert rows["providers.0.connect_timeout"]["source"] == "file"
    assert rows["providers.0.first_byte_timeout"]["source"] == "default"
    assert rows["providers.0.name"]["source"] == "file"
    assert "providers.0.scope" not in rows and "providers.0.folder_id" not in rows
    assert rows["providers.1.scope"] == {
        "key": "providers.1.scope",
        "value": "GIGACHAT_API_B2B",
        "source": "file",
    }
    assert rows["providers.1.auth_url"]["source"] == "default"
    assert "providers.1.iam_url" not in rows
    assert rows["providers.0.prices.gpt-4o-mini.input"]["value"] == "0.0000001"
    assert rows["providers.0.prices.gpt-4o-mini.input"]["source"] == "file"
    assert rows["providers.0.prices.gpt-4o-mini.currency"]["source"] == "default"
