"""Storage: tables, engines, migrations and repositories."""
