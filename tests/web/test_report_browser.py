"""The monthly HTML report (``llmgw report monthly --format html``) in Debian's headless Chromium:
one self-contained file (no script, nothing fetched: the page is opened with the network cut
off), its SVG charts drawn, and the same page printed to PDF on A4. A screenshot and the printed
page count are checked; ``UPDATE_SCREENSHOTS=1`` copies the screenshot to ``docs/screenshots/``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests import usage_month
from tests.web.test_browser import CHROMIUM, DOCS, _need_chromium


def test_monthly_html_report_renders_offline_and_prints(
    cli: Any, engine: Engine, db_url: str, tmp_path: Path
) -> None:
    if db_url.startswith("postgresql"):
        pytest.skip("the rendering does not depend on the database (SQLite run covers it)")
    _need_chromium()
    from playwright.sync_api import sync_playwright

    usage_month.seed(engine, rows=6000, days=61)
    cfg = tmp_path / "month.toml"
    cfg.write_text(usage_month.config_toml())
    out = tmp_path / "november.html"
    r = cli("--config", str(cfg), "report", "monthly", "--date", "2026-11-15", "--format", "html",
            "--out", str(out), env={"LLMGW_DATABASE_URL": db_url})  # fmt: skip
    assert r.exit_code == 0, r.stderr
    html = out.read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    fetched: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})

            def refuse(route: Any) -> None:
                fetched.append(route.request.url)
                route.abort()

            page.route("**/*", refuse)
            page.set_content(html, wait_until="load")
            assert page.title() == "llmgw monthly report November 2026"
            charts = page.locator("svg.chart")
            assert charts.count() >= 5  # requests, cost RUB, cost USD, trend, providers
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 150
            assert page.locator("svg.chart rect").count() >= 30  # a bar per day, and providers
            assert page.get_by_text("cheaper model").count() >= 1
            shot = tmp_path / "report-monthly.png"
            page.screenshot(path=str(shot), full_page=True)
            pdf = page.pdf(format="A4", print_background=True)
            pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
            assert pdf.startswith(b"%PDF") and 2 <= pages <= 8, pages  # A4, charts kept whole
        finally:
            browser.close()
    assert fetched == []  # nothing to fetch: self-contained
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, DOCS / "report-monthly.png")
