"""What the README tells a new user to paste works (issue 8 item 17)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from llmgw.config import load_settings

README = Path(__file__).resolve().parents[1] / "README.md"
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_toml_examples() -> None:
    assert any("[providers.prices." in block for block in TOML_BLOCKS)


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[f"block{i}" for i in range(len(TOML_BLOCKS))])
def test_every_toml_example_loads_as_a_config_file(tmp_path: Path, block: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(block, encoding="utf-8")
    settings = load_settings(cfg).settings
    if "[providers.prices." in block:
        price = settings.providers[0].prices["gpt-4o-mini"]
        assert (price.input, price.output) == (Decimal("0.15"), Decimal("0.60"))
