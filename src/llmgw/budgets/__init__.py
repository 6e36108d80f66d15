"""Spend budgets per key and user: definitions, the running spend shared through Redis, thresholds (see docs/budgets.md)."""
