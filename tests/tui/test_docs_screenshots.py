"""The dashboard screenshots in docs/ (``docs/tui-*.svg``), rendered with ``save_screenshot``
from the fixed data of the snapshot tests.

Each test renders its screen and checks what a reader of the docs must see, and that no secret
is in the picture; the committed file gets the same checks. ``LLMGW_DOCS_SCREENSHOTS=1`` writes
the rendered file over the committed one (review it before committing).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECRET = re.compile(r"(llmgw_|sk-)[A-Za-z0-9_-]{20,}")
"""What a key's secret or an upstream API key looks like (never in a screenshot)."""
WRITE = os.environ.get("LLMGW_DOCS_SCREENSHOTS") == "1"
"""Read at import: the autouse fixture clears ``LLMGW_*`` before each test."""


def svg_text(svg: str) -> str:
    """The visible text of a Textual SVG screenshot, one terminal line a line."""
    lines: dict[float, str] = {}
    for y, cell in re.findall(r'<text[^>]*y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        lines[float(y)] = lines.get(float(y), "") + html.unescape(re.sub("<[^>]+>", "", cell))
    return "\n".join(lines[y].replace("\xa0", " ") for y in sorted(lines))


async def render(
    app: Any, size: tuple[int, int], steps: Callable[[Any], Awaitable[None]], out: Path
) -> None:
    """Run ``app`` at ``size``, do ``steps`` and save the screen as SVG at ``out``."""
    async with app.run_test(size=size) as pilot:
        await steps(pilot)
        app.save_screenshot(filename=out.name, path=str(out.parent))


def check_and_keep(name: str, rendered: str, must_show: list[str], secrets: list[str]) -> None:
    """The rendered screenshot and the committed ``docs/name`` show ``must_show`` and none of
    ``secrets`` (nor anything shaped like a secret); written to docs/ on request."""
    target = DOCS / name
    if WRITE:
        target.write_text(rendered)
    for svg in (rendered, target.read_text()):
        text = svg_text(svg)
        for words in must_show:
            assert words in text, (name, words, text)
        for secret in secrets:
            assert secret not in svg, name
        assert not SECRET.search(svg), (name, SECRET.search(svg))


@pytest.mark.asyncio
async def test_budgets_screenshot(make_app, ops, wait, tmp_path):
    """docs/tui-budgets-80x24.svg: ``B`` on Usage at 80x24 (docs/budgets.md, docs/tui.md)."""

    async def steps(pilot):
        await wait(pilot)
        await pilot.press("3")
        await wait(pilot)
        await pilot.press("B")
        await wait(pilot)

    out = tmp_path / "tui-budgets-80x24.svg"
    await render(make_app(ops), (80, 24), steps, out)
    check_and_keep(
        "tui-budgets-80x24.svg",
        out.read_text(),
        ["Budgets (this period)", "81.2%", "1000.00 RUB", "Escape closes"],
        [],
    )


async def test_provider_admin_screenshots(make_app, ops, wait, tmp_path):
    """docs/tui-providers-manage.svg (the list, 100x28) and docs/tui-providers-add-80x24.svg
    (the form with a key typed: dots, never the key) for docs/tui.md and docs/providers.md."""
    from textual.widgets import Input

    secret = "sk-typed-for-the-screenshot-0123456789"

    async def listing(pilot):
        await wait(pilot)
        await pilot.press("m")
        await wait(pilot)
        await pilot.press("down", "down", "down")
        await wait(pilot)

    out = tmp_path / "tui-providers-manage.svg"
    await render(make_app(ops), (100, 28), listing, out)
    check_and_keep(
        out.name,
        out.read_text(),
        ["config (read-only)", "vllm", "sealed", "disabled", "ignored", "x Remove"],
        [],
    )

    async def form(pilot):
        await listing(pilot)
        await pilot.press("n")
        await wait(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        pilot.app.screen.query_one("#f-name", Input).value = "vllm"
        pilot.app.screen.query_one("#f-base_url", Input).value = "http://vllm.internal:8000/v1"
        pilot.app.screen.query_one("#f-models", Input).value = "llama-3.1-8b"
        pilot.app.screen.query_one("#f-api_key", Input).value = secret
        await wait(pilot)

    out = tmp_path / "tui-providers-add-80x24.svg"
    await render(make_app(ops), (80, 24), form, out)
    check_and_keep(
        out.name,
        out.read_text(),
        ["New provider", "OpenAI-compatible", "never shown again", "Add"],
        [secret, secret[:12]],
    )
