"""The llmgw HTTP server (Starlette): ``create_app(settings)``."""
