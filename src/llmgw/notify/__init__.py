"""Notification channels: a generic JSON webhook, a Slack incoming webhook, email over SMTP
(see docs/notifications.md). Budgets and scheduled reports send through ``Notifier``."""

from __future__ import annotations

from llmgw.notify.channels import Notification, Notifier, NotifyError, send

__all__ = ["Notification", "Notifier", "NotifyError", "send"]
