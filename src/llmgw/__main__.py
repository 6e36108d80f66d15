"""Run the CLI with ``python -m llmgw``."""

from llmgw.cli import main

main()
