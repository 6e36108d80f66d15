"""Authentication: API keys, users."""
