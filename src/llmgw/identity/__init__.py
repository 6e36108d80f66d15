"""Identity: OAuth 2.0 clients and grants, JWT access tokens, personal access tokens (issue 11).

Core layer: no HTTP framework or terminal here. ``llmgw.server.routes.oauth`` and the web pages
call these services; so do ``llmgw oauth`` and ``llmgw tokens``.
"""
