"""Conversations: history kept by the gateway, fitted to the model's context window (issue 16)."""
