"""Upstream provider adapters behind one ``Provider`` protocol."""
