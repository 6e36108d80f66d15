"""Alembic environment and versions for the llmgw database."""
