"""Start-up that cleans up after itself, and a start-up heap left alone outside ``llmgw serve``."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest

from llmgw.errors import ConfigError
from llmgw.server import create_app
from llmgw.server.state import Gateway


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llmgw-usage-writer"]


async def test_a_bad_ca_bundle_unwinds_what_had_started(
    make_settings: Any, emulator: Any, test_engine: Any, home: Path
) -> None:
    """The providers are built after the usage writer thread started: a CA bundle that is not
    PEM fails there, and everything started before it stops again (thread, spool, engine)."""
    bad = home / "not-a-bundle.pem"
    bad.write_text("this is not a certificate\n")
    settings = make_settings(emulator.url, provider={"ca_bundle": str(bad)})
    assert not _writer_threads()
    gw = Gateway(settings)
    with pytest.raises(ConfigError, match="CA bundle"):
        await gw.start()
    assert not _writer_threads()  # the writer thread was stopped, not left running
    assert not gw.started
    await gw.stop()  # nothing left to stop: a no-op, not an error


async def test_the_app_lifespan_does_not_freeze_the_host_process_heap(settings: Any) -> None:
    """``gc.freeze()`` belongs to ``llmgw serve``: an app run in-process (tests, another server)
    leaves its host's collector alone."""
    before = gc.get_freeze_count()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == before
    assert gc.get_freeze_count() == before
