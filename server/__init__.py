"""The llmgw HTTP server (Starlette): ``create_app(settings)``."""

from __future__ import annotations

from llmgw.server.app import create_app

__all__ = ["create_app"]
