"""Publishing alerts to PagerDuty, Slack and Rootly (docs/alerts.md#publishing-to-pagerduty-slack-and-rootly)."""
