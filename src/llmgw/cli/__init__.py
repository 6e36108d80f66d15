"""The ``llmgw`` command line. ``main`` is the console-script entry point."""

from __future__ import annotations

from llmgw.cli.main import main

__all__ = ["main"]
