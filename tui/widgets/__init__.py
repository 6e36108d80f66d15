"""Widgets and modal dialogs of the dashboard."""
