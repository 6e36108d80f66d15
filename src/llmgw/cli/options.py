"""Option types several command groups share (Typer ``Annotated`` aliases)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["JsonOpt"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
"""The ``--json`` flag of listing and changing commands."""
