"""The dashboard's screens, one per file; ``base.PolledScreen`` polls the admin operations."""
