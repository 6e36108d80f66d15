"""The Textual dashboard (``llmgw dash``), imported as ``llmgw.tui``.

The package exists before its screens so the import contracts in pyproject.toml can name it:
the TUI reaches data only through ``StatusSource``, never the server, storage or the CLI.
"""
